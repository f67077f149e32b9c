#!/usr/bin/env bash
# Browser tests: the demo page and its client (client/caddyupload.js), and
# stock Uppy 6 and Uppy 5, in headless Chromium against the real caddyupload
# binary (with its embedded S3-compatible server) and Dex. Installs what is
# missing on a Debian machine: Debian's Chromium (never a downloaded
# browser), node and the locked npm packages of web/.
#
# Environment: CADDYUPLOAD_BIN (a built binary; built here otherwise),
# CADDYUPLOAD_DEX_BIN (from scripts/servers.sh, run here when unset),
# CHROMIUM_BIN (default /usr/bin/chromium).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "browser-test: $*" >&2; }

apt_install() {
  if [ -z "${apt_updated:-}" ]; then
    apt-get update
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  log "installing Chromium from Debian"
  apt_install chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing node and npm from Debian"
  apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  log "node $(node --version) is too old: playwright-core and the test runner need node 20 or later"
  exit 1
fi

if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  log "installing the npm packages of web/ (npm ci)"
  (cd web && npm ci --no-audit --no-fund)
fi

if [ -z "${CADDYUPLOAD_DEX_BIN:-}" ]; then
  servers=$(scripts/servers.sh) || { log "building the test servers failed (see above)"; exit 1; }
  eval "$servers"
fi

if [ -z "${CADDYUPLOAD_BIN:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "building the caddyupload binary"
  go build -o "$tmp/caddyupload" ./caddyupload
  export CADDYUPLOAD_BIN=$tmp/caddyupload
fi
export CADDYUPLOAD_DEX_BIN

log "running the browser tests"
node --test --test-timeout=600000 web/test/
