#!/usr/bin/env bash
# System packages the test suite needs, from Debian's archive (run by `make test`; idempotent):
#   chromium   the headless browser the report and dashboard tests open pages in (driven by Playwright,
#              which downloads no browser of its own)
#   prometheus for promtool, which checks the metrics files and pages `leadscore monitor check` and
#              `leadscore serve` write (the Prometheus server itself is not started)
set -euo pipefail
missing=()
command -v chromium > /dev/null 2>&1 || missing+=(chromium)
command -v promtool > /dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system package(s): ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "setup: installing ${missing[*]} from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
