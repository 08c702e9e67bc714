#!/usr/bin/env bash
# The demo stack started by `cargo xtask run` (which execs this script, so a signal to it reaches
# this shell): everything started here is in this process group and dies with it.
set -u
cd "$(dirname "$0")/../.."
LISTEN=10000 ADMIN=9901 UPSTREAM=8081
trap 'trap - EXIT INT TERM; kill 0 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

.venv/bin/python tests/support/upstream.py --port "$UPSTREAM" &
.venv/bin/envoy -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart --log-level warn &

# Envoy loads the wasm module under V8 before it reports ready (a second or two).
for _ in $(seq 1 120); do
  if .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$ADMIN/ready', timeout=1)" 2>/dev/null; then
    cat <<MSG

Tollgate demo is up (standalone mode, plan "demo": 5 hits/minute, 2 searches/minute).

  curl -i -H 'x-api-key: tollgate-demo-key' http://127.0.0.1:$LISTEN/hello
  curl -i -H 'x-api-key: tollgate-demo-key' http://127.0.0.1:$LISTEN/search
  curl -i http://127.0.0.1:$LISTEN/hello                  # 401, no key
  curl -s http://127.0.0.1:$ADMIN/stats | grep tollgate   # the filter's counters

Ctrl-C stops everything.
MSG
    wait -n   # the first process to exit ends the demo (and the trap stops the rest)
    echo "a demo process exited; stopping the rest" >&2
    exit 1
  fi
  sleep 0.25
done
echo "Envoy did not become ready in 30 s" >&2
exit 1
