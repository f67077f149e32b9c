#!/usr/bin/env bash
# Builds the real servers the tests run against, once per version, into a cache
# directory that survives between runs. Prints the paths as shell assignments:
#   servers=$(scripts/servers.sh) && eval "$servers"
#
#   scripts/servers.sh --check   resolves every build target exactly as the
#                                build does, without building (fast; a guard
#                                that runs even when the binaries are cached)
#
# The servers are other projects' modules: they are built outside this
# repository's go.work (GOWORK=off), which would otherwise take over every go
# command run below the repository root and refuse their packages.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CADDYUPLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caddyupload}
export GOWORK=off CGO_ENABLED=0

DEX_VERSION=v0.0.0-20260303133905-11d2eeb52b42
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
VERSITYGW_VERSION=v1.8.0

mode=build
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

log() { echo "servers: $*" >&2; }
fail() { echo "servers: $*" >&2; exit 1; }

# Each target is one function: in build mode it builds into $out, in check
# mode it runs `go list` on the same package, in the same directory, with the
# same environment.
dex() { # $1 = output path
  cd "$root/tools/dex"
  if [ "$mode" = check ]; then go list github.com/dexidp/dex/cmd/dex >/dev/null; return; fi
  go build -trimpath -ldflags='-s -w' -o "$1" github.com/dexidp/dex/cmd/dex
}

versitygw() {
  local tmp
  if [ "$mode" = check ]; then
    # go install pkg@version builds outside any module; go list -m resolves the
    # same version from the same proxy without building.
    (cd / && go list -m "github.com/versity/versitygw@$VERSITYGW_VERSION" >/dev/null); return
  fi
  tmp=$(mktemp -d)
  GOBIN=$tmp go install -trimpath -ldflags='-s -w' "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$tmp/versitygw" "$1"
  rmdir "$tmp"
}

weed() {
  # go install refuses SeaweedFS (its go.mod has replace directives): build
  # inside the downloaded module instead.
  local dir
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -n "$dir" ] || fail "could not download SeaweedFS $SEAWEEDFS_VERSION"
  cd "$dir"
  if [ "$mode" = check ]; then go list ./weed >/dev/null; return; fi
  go build -trimpath -ldflags='-s -w' -o "$1" ./weed
}

# ensure NAME VERSION MESSAGE: builds $cache/bin/NAME-VERSION unless cached.
ensure() {
  local name=$1 version=$2 bin=$cache/bin/$1-$2
  if [ "$mode" = check ]; then
    ( "$name" ) || fail "cannot resolve the build of $name $version (see the error above)"
    log "$name $version: build target resolves"
    return
  fi
  if [ ! -x "$bin" ]; then
    mkdir -p "$cache/bin"
    log "building $name $version ($3)"
    ( "$name" "$bin.tmp" ) || fail "building $name $version failed (see the error above)"
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

dex_bin=$(ensure dex "$DEX_VERSION" "first time only, about 6 minutes on 2 cores")
vgw_bin=$(ensure versitygw "$VERSITYGW_VERSION" "first time only, about 3 minutes on 2 cores")
weed_bin=$(ensure weed "$SEAWEEDFS_VERSION" "first time only, about 20 minutes on 2 cores")

if [ "$mode" = build ]; then
  echo "export CADDYUPLOAD_DEX_BIN=$dex_bin"
  echo "export CADDYUPLOAD_WEED_BIN=$weed_bin"
  echo "export CADDYUPLOAD_VERSITYGW_BIN=$vgw_bin"
fi
