#!/usr/bin/env bash
# Builds the real servers the tests run against, once per version, into a cache
# directory that survives between runs. Prints the paths as shell assignments:
#   eval "$(scripts/servers.sh)"
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CADDYUPLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caddyupload}
mkdir -p "$cache/bin"

DEX_VERSION=v0.0.0-20260303133905-11d2eeb52b42
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
VERSITYGW_VERSION=v1.8.0

log() { echo "servers: $*" >&2; }

dex_bin=$cache/bin/dex-$DEX_VERSION
if [ ! -x "$dex_bin" ]; then
  log "building Dex $DEX_VERSION (first time only, several minutes)"
  (cd "$root/tools/dex" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dex_bin.tmp" github.com/dexidp/dex/cmd/dex)
  mv "$dex_bin.tmp" "$dex_bin"
fi

vgw_bin=$cache/bin/versitygw-$VERSITYGW_VERSION
if [ ! -x "$vgw_bin" ]; then
  log "building versitygw $VERSITYGW_VERSION (first time only, a few minutes)"
  tmp=$(mktemp -d)
  GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$tmp/versitygw" "$vgw_bin"
  rmdir "$tmp"
fi

weed_bin=$cache/bin/weed-$SEAWEEDFS_VERSION
if [ ! -x "$weed_bin" ]; then
  log "building SeaweedFS $SEAWEEDFS_VERSION (first time only, up to 20 minutes)"
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$weed_bin.tmp" ./weed)
  mv "$weed_bin.tmp" "$weed_bin"
fi

echo "export CADDYUPLOAD_DEX_BIN=$dex_bin"
echo "export CADDYUPLOAD_WEED_BIN=$weed_bin"
echo "export CADDYUPLOAD_VERSITYGW_BIN=$vgw_bin"
