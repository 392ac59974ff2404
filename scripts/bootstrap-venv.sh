#!/usr/bin/env bash
# Create or refresh .venv with the pinned requirements. Usage: bootstrap-venv.sh PYTHON VENV STAMP
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
stamp=${3:-$venv/.installed}

if [[ -z "$python" ]] || ! "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "IOC Hub needs Python 3.11 (Debian 12's python3). Found: ${python:-none}." >&2
    echo "On Debian: apt-get install -y python3 python3-venv python3-dev" >&2
    exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing python3-venv (needed to create .venv)" >&2
        apt-get install -y -q python3-venv >&2
    else
        echo "Python's venv module is missing: apt-get install python3-venv" >&2
        exit 1
    fi
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
rm -f "$venv"/.installed-*
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r requirements-dev.txt
"$venv/bin/python" -m pip install -q --no-deps -e .
touch "$stamp"
echo "ready: $venv ($("$venv/bin/python" --version))"
