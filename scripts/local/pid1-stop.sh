#!/usr/bin/env bash
# Graceful stop of the image's entry command as PID 1: runs `node dist/api/main.js` (the Dockerfile's CMD) as PID 1
# of a new PID namespace (unshare --pid --fork --mount-proc, as a container runs it), opens an SSE stream, sends
# SIGTERM to that PID 1 (what `docker stop` does), and checks that the stream ended cleanly with a `retry:` hint,
# that /readyz had turned 503 before the listener closed, and that the process logged "stopped" and exited 0.
# It runs under a key prefix and queue prefix of its own and, however it ends, removes them (scripts/local/namespace.ts)
# and its sale, so the shared services keep nothing of it.
# Usage: npm run -s build && scripts/local/pid1-stop.sh [port]. Needs root (unshare) and the local services.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${1:-3871}
dir=$(mktemp -d)
export PORT=$port LOG_LEVEL=info SHUTDOWN_DRAIN_MS=1000 REDIS_KEY_PREFIX="fs:pid1-$$" AMQP_PREFIX="fs.pid1-$$"
database=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/flash_sale}
sale=
cleanup() {
  kill -9 "$outer" 2>/dev/null || true # --kill-child takes PID 1 with it
  wait "$outer" 2>/dev/null || true
  npx tsx scripts/local/namespace.ts || echo "WARN: could not remove $REDIS_KEY_PREFIX / $AMQP_PREFIX"
  if [[ $sale =~ ^[0-9a-f-]{36}$ ]]; then
    psql "$database" -qc "DELETE FROM sales WHERE id = '$sale'" && echo "removed the sale $sale" || echo "WARN: could not remove the sale $sale"
  fi
  rm -rf "$dir"
}
# --kill-child: should this script die first, PID 1 of the namespace is killed with unshare, not left listening.
unshare --pid --fork --mount-proc --kill-child node dist/api/main.js >"$dir/api.log" 2>&1 &
outer=$!
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
pid1=$(pgrep -P "$outer" node)
echo "entry command runs as pid $pid1 on the host, PID 1 in its namespace: $(grep -s NSpid /proc/$pid1/status | tr -s '\t' ' ')"
token=$(curl -sf -X POST -H 'content-type: application/json' -d '{"userId":"pid1-check"}' "http://127.0.0.1:$port/api/session" | sed 's/.*"token":"\([^"]*\)".*/\1/')
sale=$(curl -sf -X POST -H "authorization: Bearer ${ADMIN_TOKEN:-development-admin-token}" -H 'content-type: application/json' -d '{"name":"pid1 check","stock":1}' "http://127.0.0.1:$port/api/admin/sales" | sed 's/.*"id":"\([^"]*\)".*/\1/')
rid=$(curl -sf -X POST -H "authorization: Bearer $token" -H "idempotency-key: $(cat /proc/sys/kernel/random/uuid)" -H 'content-type: application/json' -d '{}' "http://127.0.0.1:$port/api/sales/$sale/purchases" | sed 's/.*"requestId":"\([^"]*\)".*/\1/')
# No worker runs: the purchase stays queued and its stream stays open until the shutdown ends it.
curl -sN -H "authorization: Bearer $token" "http://127.0.0.1:$port/api/sales/$sale/purchases/$rid/events" >"$dir/stream.txt" 2>&1 &
stream=$!
sleep 0.5
kill -TERM "$pid1"
sleep 0.3
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
set +e
wait "$outer"; code=$?
wait "$stream"; curl_code=$?
set -e
echo "readyz during the drain: $ready; exit code $code; stream curl exit $curl_code"
echo "stream:"; sed 's/^/  /' "$dir/stream.txt"
fail=0
[ "$ready" = 503 ] || { echo "FAIL: /readyz was $ready during the drain, not 503"; fail=1; }
[ "$code" = 0 ] || { echo "FAIL: exit code $code"; fail=1; }
[ "$curl_code" = 0 ] || { echo "FAIL: the stream did not end cleanly (curl exit $curl_code)"; fail=1; }
grep -q '^retry: ' "$dir/stream.txt" || { echo "FAIL: no retry: hint on the stream"; fail=1; }
grep -q '"msg":"stopped"' "$dir/api.log" || { echo "FAIL: no 'stopped' in the log"; fail=1; tail -5 "$dir/api.log"; }
[ $fail = 0 ] && echo "PASS: PID 1 stopped gracefully on SIGTERM"
exit $fail
