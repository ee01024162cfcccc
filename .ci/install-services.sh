#!/usr/bin/env bash
# Install what the test suite needs beyond Python: Debian packages for the servers and tools
# it drives (the suite starts and stops its own instances on loopback ports under build/),
# and the npm packages of the foreign OPC UA client. Idempotent and quick when all is there.
set -euo pipefail
build=${1:-build}
mkdir -p "$build"

packages=(postgresql influxdb mbpoll chromium mosquitto)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node.js may come from elsewhere (with its own npm): only install Debian's when there is none
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >"$build/apt.log" 2>&1; then
        $sudo apt-get update -q >>"$build/apt.log" 2>&1
        $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$build/apt.log" 2>&1 \
            || { tail -n 30 "$build/apt.log" >&2; exit 1; }
    fi
    # the packages start system-wide services where an init system runs; the suite uses its own
    for svc in postgresql influxdb mosquitto; do
        $sudo service "$svc" stop >/dev/null 2>&1 || true
    done
fi

# node-opcua: an OPC UA client stack that is not ours, for interoperability tests
if [ -f tests/interop/package.json ]; then
    if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
        (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
