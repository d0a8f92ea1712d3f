#!/usr/bin/env bash
# Runs the cluster-backed tests against a real Kubernetes (docs/real-cluster.md): brings the one-node
# cluster of scripts/real-cluster.sh up, runs the suite with KBRIDGE_TEST_KUBECONFIG pointing
# at it (each test in a namespace of its own), and takes the cluster down again, also when
# a test fails or the run is interrupted.
#
#   bash scripts/test-real-cluster.sh [CARGO TEST ARGS...]
#
# Needs root and what `scripts/real-cluster.sh up` lists; .ci/run installs it all.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cluster-backed test files of tests/tests (the others need no cluster).
CLUSTER_TESTS=(
    bridge_session cli_session cluster_swap cluster_target session_lifecycle session_targets
    isolation isolation_crash isolation_grpc isolation_outbound isolation_sessions real_cluster
    chaos_agent_loss chaos_drift chaos_kill chaos_leaks chaos_outage chaos_paused chaos_teardown
    chaos_unreachable_teardown run_signals session_env_paths session_identity
)

out=$(mktemp)
trap 'bash scripts/real-cluster.sh down || true; rm -f "$out"' EXIT
bash scripts/real-cluster.sh up | tee "$out"
agent_image=$(awk '$1 == "agent-image" {print $2}' "$out")
kubeconfig=$(awk '$1 == "ready" {print $2}' "$out")
[ -n "$kubeconfig" ] || { echo "the real cluster did not say it was ready" >&2; exit 1; }

# kubectl of the same release as the cluster, first on PATH for the tests.
kube_bin=$(dirname "$(bash scripts/real-cluster.sh kubectl-path)")
targets=()
for t in "${CLUSTER_TESTS[@]}"; do targets+=(--test "$t"); done
cargo build --workspace --bins
status=0
KBRIDGE_TEST_KUBECONFIG=$kubeconfig KBRIDGE_AGENT_IMAGE=$agent_image PATH="$kube_bin:$PATH" \
    cargo test -p kbridge-tests "${targets[@]}" "$@" || status=$?
# A failure is explained while the cluster that saw it still runs (`down` removes its logs).
if [ "$status" != 0 ]; then
    bash scripts/real-cluster.sh diagnose || true
fi
exit "$status"
