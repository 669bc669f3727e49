#!/usr/bin/env bash
# Idempotent host setup for building and testing tracer on a fresh Linux VM as root.
# Why these pins: see docs/development.md (bpf-linker's LLVM must match the nightly's).
set -euo pipefail

STABLE=1.99.1
NIGHTLY=nightly-2026-07-15
BPF_LINKER=0.13.0
export RUSTUP_AUTO_INSTALL=0
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
# One package a line, so that branches adding packages merge cleanly.
packages=(
  llvm-22-dev
  libpolly-22-dev
  nginx-light
  curl
  wrk
  apache2-utils
  apache2
  nats-server
  openssl
  python3
  iproute2
  libssl3
  gnutls-bin
  util-linux
  chromium
  libmaxmind-db-writer-perl
  prometheus-alertmanager
  nghttp2-client
  python3-venv
  # The hub's PostgreSQL e2e runs a throwaway cluster from /usr/lib/postgresql/15/bin.
  postgresql-15
)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
# The TLS tests run a Node.js HTTPS server (its OpenSSL is built in); any node will do.
command -v node >/dev/null || need_pkgs+=(nodejs)
# The dashboard's browser test installs playwright-core with npm.
command -v npm >/dev/null || need_pkgs+=(npm)
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# nginx from Debian may start its packaged site on :80 when installed; tests start their
# own. Stop only that packaged daemon, never another nginx running on this host.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  kill -QUIT "$(cat /run/nginx.pid)" 2>/dev/null || true
fi

# playwright-core drives Debian's chromium in the dashboard's browser test (no browser
# download: it is pinned in tests/browser/package-lock.json and uses /usr/bin/chromium).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core for the browser test"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

# The gRPC tests run a Python server and client with grpcio from PyPI, in a venv of
# Debian's python3 at a fixed path (tests/src/servers/grpc.rs looks there).
GRPC_VENV=/opt/tracer-tests/grpc-venv
GRPCIO=1.85.1
if ! "$GRPC_VENV/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '$GRPCIO')" 2>/dev/null; then
  log "installing grpcio ${GRPCIO} into ${GRPC_VENV}"
  /usr/bin/python3 -m venv --clear "$GRPC_VENV"
  "$GRPC_VENV/bin/pip" install -q --disable-pip-version-check "grpcio==${GRPCIO}"
fi

rustup toolchain list | grep -q "^${STABLE}" || {
  log "installing Rust ${STABLE}"
  rustup toolchain install "$STABLE" --profile minimal --component clippy,rustfmt
}
rustup toolchain list | grep -q "^${NIGHTLY}" || {
  log "installing Rust ${NIGHTLY} with rust-src"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
}
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER"; then
  log "building bpf-linker ${BPF_LINKER} against LLVM 22 (takes a few minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo +"$STABLE" install "bpf-linker@${BPF_LINKER}" --locked \
    --no-default-features --features llvm-22
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
log "ready"
