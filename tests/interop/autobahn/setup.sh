#!/usr/bin/env bash
# Installs Autobahn|Testsuite (Python 2 code) into its own virtualenv: .autobahn/venv2.
# Idempotent: does nothing once `wstest` runs. Needs CPython 2.7 (pyenv) and PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DIR="${AUTOBAHN_DIR:-$ROOT/.autobahn}"
PY2="${PY2:-$(ls -d "$HOME"/.pyenv/versions/2.7*/bin/python 2>/dev/null | tail -1)}"
PY3="${PY3:-python3}"
VENV="$DIR/venv2"

if [ -x "$VENV/bin/wstest" ] && "$VENV/bin/python" -c "import wsaccel, autobahntestsuite" 2>/dev/null; then
    exit 0
fi
[ -n "$PY2" ] && [ -x "$PY2" ] || { echo "autobahn setup: CPython 2.7 not found (set PY2=)" >&2; exit 1; }
mkdir -p "$DIR"
# virtualenv 20.22 dropped support for creating Python 2 environments.
if [ ! -x "$DIR/tools/bin/virtualenv" ]; then
    "$PY3" -m venv "$DIR/tools"
    "$DIR/tools/bin/pip" install -q "virtualenv<20.22"
fi
[ -x "$VENV/bin/python" ] || "$DIR/tools/bin/virtualenv" -q -p "$PY2" "$VENV"
# The last releases that still run on Python 2.7, pinned so pip's resolver does not wander.
# wsaccel (C masking/UTF-8) makes the suite's client fast enough for the 16 MiB cases of §9.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-python-version-warning \
    "autobahntestsuite==0.8.2" \
    "autobahn[twisted]==0.10.9" \
    "twisted==20.3.0" \
    "cryptography==3.3.2" \
    "pyopenssl==20.0.1" \
    "service-identity==18.1.0" \
    "attrs==20.3.0" \
    "zope.interface==5.4.0" \
    "klein==17.2.0" \
    "werkzeug==0.16.1" \
    "jinja2==2.11.3" \
    "markupsafe==1.1.1" \
    "pyasn1==0.4.8" \
    "pyasn1-modules==0.2.8" \
    "six==1.16.0" \
    "incremental==21.3.0" \
    "hyperlink==21.0.0" \
    "idna==2.10" \
    "typing==3.10.0.0" \
    "Automat==20.2.0" \
    "constantly==15.1.0" \
    "PyHamcrest==1.10.1" \
    "cffi==1.15.1" \
    "pycparser==2.21" \
    "ipaddress==1.0.23" \
    "enum34==1.1.10" \
    "setuptools<45" \
    "wsaccel==0.6.2" \
    "ujson==2.0.3"
"$VENV/bin/wstest" --help >/dev/null
echo "autobahn: wstest installed in $VENV"
