#!/usr/bin/env bash
# Traces a Python and an nginx server while curl sends varied requests, then
# prints the records.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo xtask demo
