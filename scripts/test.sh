#!/usr/bin/env bash
# Runs every test of the project against real servers: an S3-compatible
# server (versitygw and SeaweedFS), an OIDC provider (Dex) and headless
# Chromium with the real Uppy. Installs and builds what is missing, once;
# built servers are cached in ${CADDYUPLOAD_CACHE:-~/.cache/caddyupload}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# A server that cannot be built stops the run here, with its build's error
# (an eval of a failed command substitution would carry on).
servers=$(scripts/servers.sh) || { echo "test.sh: building the test servers failed (see above)" >&2; exit 1; }
eval "$servers"
pg=$(scripts/postgres.sh) || { echo "test.sh: PostgreSQL setup failed (see above)" >&2; exit 1; }
eval "$pg"
# The server builds are skipped when cached; this resolves each build target
# exactly as a first run would, so a change that breaks them fails here.
scripts/servers.sh --check

echo "== go vet"
go vet ./...
(cd caddyupload && go vet ./...)

echo "== staticcheck"
cache=${CADDYUPLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caddyupload}
staticcheck=$cache/bin/staticcheck-v0.8.2
if [ ! -x "$staticcheck" ]; then
  mkdir -p "$cache/bin"
  sc_tmp=$(mktemp -d)
  GOWORK=off GOBIN=$sc_tmp go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
  mv "$sc_tmp/staticcheck" "$staticcheck"
  rmdir "$sc_tmp"
fi
"$staticcheck" ./...
(cd caddyupload && "$staticcheck" ./...)

echo "== go test (race detector on)"
go test -race -count=1 -timeout 30m ./...
(cd caddyupload && go test -race -count=1 -timeout 30m ./...)

echo "== benchmarks build (run with bench/run.sh)"
# One iteration each: they must run, not be timed. Their output is kept
# only when one fails.
bench_out=$(mktemp)
go test -run '^$' -bench . -benchtime 1x ./... >"$bench_out" 2>&1 || { grep -v '^{"level' "$bench_out" >&2; rm -f "$bench_out"; exit 1; }
rm -f "$bench_out"

echo "== xcaddy build (the handler as xcaddy users build it) and list-modules"
xbin=$(mktemp -d)
trap 'rm -rf "$xbin"' EXIT
scripts/xcaddy-build.sh "$xbin/caddy"
for m in http.handlers.upload upload.storage.s3 upload.ledger.bolt upload.ledger.postgres admin.api.upload admin.api.upload_health admin.api.upload_records; do
  "$xbin/caddy" list-modules | grep -qx "$m" || { echo "test.sh: the xcaddy build lacks module $m" >&2; exit 1; }
done

echo "== browser tests (headless Chromium, real Uppy)"
scripts/browser-test.sh
