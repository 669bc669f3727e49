#!/usr/bin/env bash
# The test command: host setup (idempotent), then the release tracer build and
# every test, including the end-to-end suite that runs it as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo xtask test "$@"
