#!/usr/bin/env bash
# The seed's scenario end to end on a simulated cluster: build, start simcluster + reflexion-api + watcher,
# create a pod with an image tag that does not exist, and show it detected, fixed, verified and remembered.
# Needs only the Rust toolchain and curl. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_PORT=${SIM_PORT:-16443}
API_PORT=${API_PORT:-18000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kube-reflexion-demo.XXXXXX")
SIM="http://127.0.0.1:$SIM_PORT"
API="http://127.0.0.1:$API_PORT"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { grep -o "\"$1\":\"[^\"]*\"" | head -n1 | cut -d'"' -f4; }
wait_http() {
  for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; exit 1
}

step "Building"
cargo build --quiet --workspace --bins
BIN=target/debug

step "Starting simcluster on $SIM, reflexion-api on $API, and the watcher"
"$BIN/simcluster" --listen "127.0.0.1:$SIM_PORT" --kubeconfig-out "$WORK/kubeconfig" --time-scale 5 >"$WORK/simcluster.log" 2>&1 &
PIDS+=($!)
wait_http "$SIM/version"
export KUBECONFIG="$WORK/kubeconfig"
"$BIN/reflexion-api" --listen "127.0.0.1:$API_PORT" --database-url "sqlite://$WORK/reflexion.db" \
  --registry-url "$SIM" --verify-window-secs 5 >"$WORK/reflexion-api.log" 2>&1 &
PIDS+=($!)
wait_http "$API/health"
"$BIN/watcher" --api-url "$API" --spool-dir "$WORK/spool" --admin-listen 127.0.0.1:0 >"$WORK/watcher.log" 2>&1 &
PIDS+=($!)
echo "kubeconfig: $KUBECONFIG (try: kubectl --kubeconfig $KUBECONFIG get pods)"

step "kubectl run test-nginx --image=nginx:bu-tag-yok"
curl -fsS -X POST "$SIM/api/v1/namespaces/default/pods" -H 'Content-Type: application/json' \
  -d '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"test-nginx","labels":{"run":"test-nginx"}},"spec":{"containers":[{"name":"test-nginx","image":"nginx:bu-tag-yok"}]}}' \
  >/dev/null
echo "pod/test-nginx created"

step "Watching the incident"
last=""
for _ in $(seq 1 600); do
  incidents=$(curl -fsS "$API/api/v1/reflexion/incidents")
  state=$(printf '%s' "$incidents" | field state || true)
  if [ -n "$state" ] && [ "$state" != "$last" ]; then
    echo "incident state: $state"
    last=$state
  fi
  case "$state" in resolved|escalated|failed|dismissed) break ;; esac
  sleep 0.2
done
id=$(printf '%s' "$incidents" | field id)
detail=$(curl -fsS "$API/api/v1/reflexion/incidents/$id")
echo "detected by the watcher: $(grep -m1 'failure detected' "$WORK/watcher.log" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^.*failure detected/failure detected/')"
echo "command:      $(printf '%s' "$detail" | field command)"
echo "rationale:    $(printf '%s' "$detail" | field rationale)"
echo "outcome:      $(printf '%s' "$detail" | field outcome)"
echo "reflection:   $(printf '%s' "$detail" | field reflection)"

step "The pod now"
pod=$(curl -fsS "$SIM/api/v1/namespaces/default/pods/test-nginx")
echo "image: $(printf '%s' "$pod" | grep -o '"image":"[^"]*"' | head -n1 | cut -d'"' -f4)   phase: $(printf '%s' "$pod" | field phase)"

step "What it learned (GET /api/v1/reflexion/strategies)"
curl -fsS "$API/api/v1/reflexion/strategies"
echo

[ "$last" = "resolved" ] || { echo "demo failed: incident ended $last"; tail -n 30 "$WORK"/*.log; exit 1; }
step "Done: detected, fixed at the right level, verified, remembered. Stopping everything."
