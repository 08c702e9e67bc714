#!/usr/bin/env bash
# The demo stack started by `cargo xtask run` (which execs this script, so a signal to it reaches
# this shell): everything started here is in this process group and dies with it.
#   demo upstream :8081, control plane :8080 (SQLite in .tollgate/demo), Envoy :10000 (admin :9901)
set -u
cd "$(dirname "$0")/../.."
LISTEN=10000 ADMIN=9901 UPSTREAM=8081 CP=8080
DIR=.tollgate/demo
PY=.venv/bin/python
# `cargo xtask run` passes where it built them (CARGO_TARGET_DIR is honoured).
TOLLGATE=${TOLLGATE_BIN:-target/release/tollgate}
WASM=${TOLLGATE_WASM:-target/wasm32-wasip1/wasm/tollgate_filter.wasm}
trap 'trap - EXIT INT TERM; kill 0 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
fail() { echo "demo: $*" >&2; exit 1; }
json() { $PY -c "import json,sys; print(json.load(sys.stdin)$1)"; }

rm -rf "$DIR" && mkdir -p "$DIR"
export TOLLGATE_ADMIN_TOKEN="tga_demo_$($PY -c 'import secrets; print(secrets.token_urlsafe(24))')"
export TOLLGATE_TOKEN="$TOLLGATE_ADMIN_TOKEN" TOLLGATE_URL="http://127.0.0.1:$CP"

$PY tests/support/upstream.py --port "$UPSTREAM" >"$DIR/upstream.log" 2>&1 &
TOLLGATE_LISTEN="127.0.0.1:$CP" TOLLGATE_DATABASE_URL="sqlite://$PWD/$DIR/tollgate.db?mode=rwc" \
  $TOLLGATE serve >"$DIR/control-plane.log" 2>&1 &
ready() { $PY -c "import urllib.request as u; u.urlopen('$1', timeout=1)" 2>/dev/null; }
for _ in $(seq 1 120); do ready "http://127.0.0.1:$CP/healthz" && break; sleep 0.25; done
ready "http://127.0.0.1:$CP/healthz" || fail "the control plane did not start (see $DIR/control-plane.log)"

# Seed a demo catalog through the CLI (the same admin API anyone would use).
SERVICE=$($TOLLGATE services create --name "Demo API" --json | json "['id']") || fail "seeding failed"
$TOLLGATE metrics create --service "$SERVICE" --name search --unit call --parent hits --json >/dev/null
curl_json() { $PY - "$@" <<'PYEOF'
import json, sys, urllib.request, os
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(os.environ["TOLLGATE_URL"] + "/admin/api/v1" + path, data=body.encode(), method=method,
                             headers={"Authorization": "Bearer " + os.environ["TOLLGATE_TOKEN"], "Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PYEOF
}
curl_json POST "/services/$SERVICE/mapping_rules" '{"method":"ANY","pattern":"/","metric":"hits"}' >/dev/null
curl_json POST "/services/$SERVICE/mapping_rules" '{"method":"GET","pattern":"/search$","metric":"search"}' >/dev/null
PLAN=$($TOLLGATE plans create --service "$SERVICE" --name Demo --published --fixed-fee 10 \
  --limit hits:minute:5 --limit search:minute:2 --price hits:1::0.001 --json | json "['id']")
ACCOUNT=$($TOLLGATE accounts create --name "Demo Developer" --email dev@example.com --json | json "['id']")
APP=$($TOLLGATE applications create --account "$ACCOUNT" --plan "$PLAN" --name "Demo App" --json)
APP_ID=$(echo "$APP" | json "['id']")
KEY=$(echo "$APP" | json "['key']")
GATEWAY_TOKEN=$($TOLLGATE gateway-tokens create --name demo-envoy --service "$SERVICE" --json | json "['token']")

SERVICE_ID="$SERVICE" GATEWAY_TOKEN="$GATEWAY_TOKEN" WASM="$WASM" $PY -c '
import os, sys
t = open("envoy/envoy-control-plane.yaml").read()
for k in ("SERVICE_ID", "GATEWAY_TOKEN"):
    t = t.replace("${" + k + "}", os.environ[k])
t = t.replace("target/wasm32-wasip1/wasm/tollgate_filter.wasm", os.environ["WASM"])
open(sys.argv[1], "w").write(t)' "$DIR/envoy.yaml"
.venv/bin/envoy -c "$DIR/envoy.yaml" --concurrency 2 --disable-hot-restart --log-level warn \
  --log-path "$DIR/envoy.log" &

# Envoy loads the module under V8, then the filter fetches its first snapshot.
for _ in $(seq 1 120); do
  code=$($PY -c "
import urllib.request as u, urllib.error as e
try: print(u.urlopen(u.Request('http://127.0.0.1:$LISTEN/hello', headers={'x-api-key': '$KEY'}), timeout=1).status)
except e.HTTPError as x: print(x.code)
except Exception: print(0)" 2>/dev/null)
  [ "$code" = 200 ] && break
  sleep 0.25
done
[ "$code" = 200 ] || fail "Envoy with the filter did not come up (see $DIR/envoy.log)"

cat <<MSG

Tollgate demo is up: control plane + Envoy with the filter (control-plane mode) + a demo upstream.
Plan "Demo": 5 hits/minute, 2 searches/minute, 10.00/month, 0.001 per hit.

  admin API      http://127.0.0.1:$CP/admin/api/v1   (docs: http://127.0.0.1:$CP/openapi.json)
  admin portal   http://127.0.0.1:$CP/admin           (sign in with the admin token)
  dev portal     http://127.0.0.1:$CP/portal/sign_up
  admin token    $TOLLGATE_ADMIN_TOKEN
  demo key       $KEY   (application $APP_ID)

  curl -i -H 'x-api-key: $KEY' http://127.0.0.1:$LISTEN/hello
  curl -i -H 'x-api-key: $KEY' http://127.0.0.1:$LISTEN/search
  curl -s -H 'Authorization: Bearer $TOLLGATE_ADMIN_TOKEN' 'http://127.0.0.1:$CP/admin/api/v1/applications/$APP_ID/usage?period=hour'
  TOLLGATE_TOKEN=$TOLLGATE_ADMIN_TOKEN $TOLLGATE applications list

Logs in $DIR/. Ctrl-C stops everything.
MSG
wait -n   # the first process to exit ends the demo (and the trap stops the rest)
echo "a demo process exited; stopping the rest (logs in $DIR/)" >&2
exit 1
