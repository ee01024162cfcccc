#!/usr/bin/env bash
# Create the virtual environment. Debian ships venv in a separate package (python3-venv):
# install it when it is missing and we may.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' 2>/dev/null; then
    echo "error: $python is not Python 3.11 or newer" >&2; exit 1
fi
if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing python${ver}-venv (Debian keeps venv apart)" >&2
    $sudo apt-get install -y -q "python${ver}-venv" || { $sudo apt-get update -q && $sudo apt-get install -y -q "python${ver}-venv"; }
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade "pip>=24"
