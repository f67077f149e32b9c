#!/usr/bin/env bash
# Builds Caddy with the plugins listed in xcaddy.json, the way users of
# xcaddy build it:
#   scripts/xcaddy-build.sh [output]
#
# xcaddy.json: {"caddy": <Caddy version>, "xcaddy": <xcaddy version>,
#   "output": <path, relative to the repository>, "plugins": [{"module":
#   <module path>, "version": <optional>, "replace": <optional local path,
#   relative to the repository>}]}
#
# Such a build has the upload handler with its s3 storage and bbolt ledger,
# but not the embedded S3-compatible server: that lives in the
# ./caddyupload module, with its own go.mod, so that importing the handler
# does not pull in the server's dependencies. Build the binary with the
# embedded server with `go build ./caddyupload` (or `go run ./caddyupload run`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
manifest=$root/xcaddy.json

# manifest_get prints the manifest's fields, one per line:
#   caddy, xcaddy, output, then one --with argument per plugin.
manifest_get() {
  if command -v jq >/dev/null 2>&1; then
    jq -r '.caddy, .xcaddy, (.output // "dist/caddy"),
      (.plugins[] | .module + (if .version then "@" + .version else "" end)
        + (if .replace then "=" + .replace else "" end))' "$manifest"
  else
    python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["caddy"]); print(m["xcaddy"]); print(m.get("output") or "dist/caddy")
for p in m["plugins"]:
    print(p["module"] + ("@" + p["version"] if p.get("version") else "") + ("=" + p["replace"] if p.get("replace") else ""))
PY
  fi
}

mapfile -t fields < <(manifest_get)
caddy_version=${fields[0]}
xcaddy_version=${fields[1]}
output=${1:-${fields[2]}}
with=()
for plugin in "${fields[@]:3}"; do
  with+=(--with "$plugin")
done

xcaddy=$(command -v xcaddy || true)
if [ -z "$xcaddy" ] || ! "$xcaddy" version 2>/dev/null | grep -q "^$xcaddy_version\b"; then
  gobin=$(go env GOPATH)/bin
  xcaddy=$gobin/xcaddy
  if ! [ -x "$xcaddy" ] || ! "$xcaddy" version 2>/dev/null | grep -q "^$xcaddy_version\b"; then
    echo "xcaddy-build: installing xcaddy $xcaddy_version" >&2
    GOBIN=$gobin go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version"
  fi
fi

# Relative replace paths are the repository's; xcaddy resolves them against
# the working directory. The workspace file must not leak into xcaddy's
# temporary module.
cd "$root"
# xcaddy asks the module proxy for this module's versions before applying
# the replace directive; the module is not published, and a proxy answers
# that with 404 or 403. Ending the proxy list with "|off" turns any answer
# into "not found", so go uses the local copy; every other module still
# comes from the proxy.
proxy=${GOPROXY:-$(go env GOPROXY)}
case $proxy in
  *off) ;;
  *) export GOPROXY="${proxy%,direct}|off" ;;
esac
case $output in /*) ;; *) output=$root/$output ;; esac
echo "xcaddy-build: Caddy $caddy_version ${with[*]} -> $output" >&2
GOWORK=off "$xcaddy" build "$caddy_version" "${with[@]}" --output "$output"
