"""python -m roadrunner"""

from roadrunner.cli import main

main()
