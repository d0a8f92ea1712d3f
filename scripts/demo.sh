#!/usr/bin/env bash
# The main job on a machine without a cluster: starts the fixture cluster with the sample
# apps (todo-api ×2, stats-api), then runs a command bridged to todo-api — it gets the
# pod's secret environment and reaches stats-api by its cluster name — and shows that
# the cluster is put back afterwards. Needs root (the fixture runs pods in namespaces).
# With --real, the same on a real Kubernetes (scripts/real-cluster.sh), taken down after.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p kbridge -p kbridge-fixtures -p kbridge-agent -p todo-api -p stats-api
bin=target/debug
if [ "${1:-}" = "--real" ]; then
    # A real one-node Kubernetes built from upstream sources (docs/real-cluster.md).
    out=$(mktemp)
    trap 'bash scripts/real-cluster.sh down; rm -f "$out"' EXIT
    bash scripts/real-cluster.sh up --demo | tee "$out"
    export KUBECONFIG=$(awk '$1 == "ready" {print $2}' "$out")
    export KBRIDGE_AGENT_IMAGE=$(awk '$1 == "agent-image" {print $2}' "$out")
else
    state=$(mktemp -d /tmp/kbridge-demo.XXXXXX)
    "$bin/kube-fixture" serve --demo --state-dir "$state" >"$state/ready" 2>"$state/fixture.log" &
    fixture=$!
    trap 'kill -TERM $fixture 2>/dev/null; wait $fixture 2>/dev/null; rm -rf "$state"' EXIT
    for _ in $(seq 100); do grep -q '^ready' "$state/ready" 2>/dev/null && break; sleep 0.1; done
    grep -q '^ready' "$state/ready" || { cat "$state/fixture.log" >&2; exit 1; }
    export KUBECONFIG="$state/kubeconfig"
fi

echo "== the cluster"
"$bin/kbridge" targets --namespace todo
echo
echo "== a command bridged to service todo-api"
"$bin/kbridge" run --namespace todo --service todo-api -- python3 -c '
import os, urllib.request
print("API_KEY from the pod secret:", os.environ["API_KEY"])
print("stats-api by name:", urllib.request.urlopen("http://stats-api/stats", timeout=10).read().decode())'
echo
echo "== afterwards"
"$bin/kbridge" status --namespace todo
