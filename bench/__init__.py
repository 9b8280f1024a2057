"""Benchmark harness: roadrunner side by side with its peers (`python -m bench.run`)."""
