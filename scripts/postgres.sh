#!/usr/bin/env bash
# Makes sure PostgreSQL is installed for the PostgreSQL ledger's tests, and
# prints where its programs are as a shell assignment:
#   pg=$(scripts/postgres.sh) && eval "$pg"
#
# Installs Debian's postgresql package when no /usr/lib/postgresql/*/bin/postgres
# exists (as root, through apt-get). Nothing is started here: each test
# binary runs its own throwaway server (internal/realservers/postgres.go) on
# a scratch directory and a free port, as the postgres user when the tests
# run as root, since PostgreSQL refuses to run as root.
set -euo pipefail

log() { echo "postgres: $*" >&2; }
fail() { echo "postgres: $*" >&2; exit 1; }

# The newest installed major version's bin directory, or nothing.
find_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  fi
}

if [ -n "${CADDYUPLOAD_PG_BIN:-}" ]; then
  [ -x "$CADDYUPLOAD_PG_BIN/postgres" ] && [ -x "$CADDYUPLOAD_PG_BIN/initdb" ] ||
    fail "CADDYUPLOAD_PG_BIN=$CADDYUPLOAD_PG_BIN holds no postgres and initdb"
  bin=$CADDYUPLOAD_PG_BIN
else
  bin=$(find_bin)
fi

if [ -z "$bin" ]; then
  [ "$(id -u)" = 0 ] || fail "PostgreSQL is not installed; as root: apt-get install -y postgresql"
  command -v apt-get >/dev/null || fail "PostgreSQL is not installed and there is no apt-get: install its server and set CADDYUPLOAD_PG_BIN to its bin directory"
  log "installing Debian's postgresql (first time only, about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale in a fresh image.
  if ! apt-get install -y --no-install-recommends postgresql >&2; then
    apt-get update >&2 || fail "apt-get update failed"
    apt-get install -y --no-install-recommends postgresql >&2 || fail "apt-get install postgresql failed"
  fi
  bin=$(find_bin)
  [ -n "$bin" ] || fail "postgresql is installed but /usr/lib/postgresql/*/bin/postgres is missing"
fi

# Root runs the server as postgres. The package creates that user; an image
# that carries the programs without it gets one here.
if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
  log "creating the postgres system user"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres ||
    fail "could not create the postgres user"
fi

log "$("$bin/postgres" --version)"
echo "export CADDYUPLOAD_PG_BIN=$bin"
