#!/usr/bin/env bash
# Runs every benchmark and writes bench/results.md:
#
#   bench/run.sh                      # everything, about 15 minutes on 2 cores
#   bench/run.sh -only routes -d 5s   # flags go to bench/runner (see -help)
#   bench/run.sh -only client -client-size 268435456   # the Go client alone
#
# With -only, bench/results.md keeps the sections of the scenarios that did
# not run, and the micro-benchmarks run only with BENCH_MICRO=1.
# Environment: BENCH_MICRO=0 skips the Go micro-benchmarks.
# Needs Go, node/npm (for Uppy Companion) and the real servers that
# scripts/servers.sh builds once and caches. Everything listens on 127.0.0.1
# and every process it starts is stopped when it ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
servers=$(scripts/servers.sh) || { echo "bench: building the servers failed (see above)" >&2; exit 1; }
eval "$servers"
# The scenarios -only names (all when it is absent).
only=all
args=("$@")
for i in "${!args[@]}"; do
  case ${args[$i]} in
    -only|--only) only=${args[$((i + 1))]:-} ;;
    -only=*|--only=*) only=${args[$i]#*=} ;;
  esac
done
wants() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
if wants companion; then
  command -v npm >/dev/null || { echo "bench: npm is needed for Uppy Companion (apt-get install nodejs npm)" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/caddyupload-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
bin=$work/bin
mkdir -p "$bin"

log() { echo "bench: $*" >&2; }

log "building caddy, loadgen, naiveapp, runner"
go build -o "$bin/caddy" ./caddyupload
go build -o "$bin/loadgen" ./bench/loadgen
go build -o "$bin/naiveapp" ./bench/naiveapp
go build -o "$bin/runner" ./bench/runner

if wants companion; then
  log "installing Uppy Companion (bench/companion/package-lock.json)"
  (cd bench/companion && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

micro=()
default_micro=1
[ "$only" = all ] || default_micro=0
if [ "${BENCH_MICRO:-$default_micro}" != 0 ]; then
  log "Go micro-benchmarks (-count 5, a few minutes)"
  go test -run '^$' -bench . -benchtime 2s -count 5 \
    . ./client ./storage/boltledger ./storage/s3store ./internal/oidcauth > "$work/micro.txt"
  micro=(-micro "$work/micro.txt")
  if GOBIN=$bin go install golang.org/x/perf/cmd/benchstat@latest 2>/dev/null; then
    (cd "$work" && "$bin/benchstat" micro.txt > benchstat.txt) && micro+=(-benchstat "$work/benchstat.txt")
  else
    log "benchstat unavailable; medians only"
  fi
fi

log "load scenarios (uptime: $(cut -d' ' -f1-3 /proc/loadavg))"
timeout 60m "$bin/runner" -bin "$bin" -work "$work" -out bench/results.md -companion bench/companion "${micro[@]}" "$@"
log "done: bench/results.md"
