#!/usr/bin/env bash
# Schema-driven fuzzing of reflexion-api: schemathesis (from PyPI, pinned) reads the served OpenAPI document,
# generates requests for every operation (valid, boundary and invalid), and fails on any 5xx or any answer that does
# not match its documented schema (the live feed, /api/v1/events, is left out: a stream never ends; tests/rest.rs
# covers it). Starts simcluster and
# reflexion-api on loopback with a token, stops them afterwards. Needs the Rust toolchain and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_PORT=${SIM_PORT:-16543}
API_PORT=${API_PORT:-18543}
EXAMPLES=${FUZZ_EXAMPLES:-30}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kube-reflexion-fuzz.XXXXXX")
VENV=${FUZZ_VENV:-$HOME/.cache/kube-reflexion/schemathesis-4.32.5}
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_http() {
  for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; exit 1
}

if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  for attempt in 1 2 3; do
    "$VENV/bin/pip" install --quiet schemathesis==4.32.5 && break
    [ "$attempt" = 3 ] && { echo "could not install schemathesis from PyPI" >&2; exit 1; }
    sleep 5
  done
fi

cargo build --quiet -p simcluster -p reflexion-api --bins
target/debug/simcluster --listen "127.0.0.1:$SIM_PORT" --kubeconfig-out "$WORK/kubeconfig" >"$WORK/simcluster.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/version"
KUBECONFIG="$WORK/kubeconfig" target/debug/reflexion-api --listen "127.0.0.1:$API_PORT" \
  --database-url "sqlite://$WORK/reflexion.db" --api-token fuzz-token >"$WORK/reflexion-api.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$API_PORT/health"

status=0
"$VENV/bin/st" run "http://127.0.0.1:$API_PORT/api/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance -H "Authorization: Bearer fuzz-token" \
  --exclude-path /api/v1/events \
  --max-examples "$EXAMPLES" --seed 42 --no-color || status=$?
if [ "$status" != 0 ]; then
  echo "--- reflexion-api log (last 40 lines) ---"; tail -n 40 "$WORK/reflexion-api.log"
fi
exit "$status"
