#!/usr/bin/env bash
# A real one-node Kubernetes on this machine, built from upstream sources (docs/real-cluster.md).
#
#   bash scripts/real-cluster.sh up [--demo]   build or reuse the binaries, start the cluster;
#                                              prints `agent-image <ref>`, then `ready <kubeconfig>`
#   bash scripts/real-cluster.sh down          remove everything `up` made
#   bash scripts/real-cluster.sh status        which of its processes run
#   bash scripts/real-cluster.sh kubectl-path  the kubectl built with the cluster
#   bash scripts/real-cluster.sh api-stop      stop the API server alone (the rest keeps running)
#   bash scripts/real-cluster.sh api-start     start it again (same state)
#   bash scripts/real-cluster.sh diagnose      what a failed run needs to be understood: node
#                                              conditions, every pod, recent events, log tails
#
# Host processes: etcd, kube-apiserver (Node,RBAC; PodSecurity admission), controller-manager,
# scheduler, containerd + runc + bridge CNI, kubelet, kube-proxy (iptables), CoreDNS, and a
# loopback image registry that containerd pulls every image from. How it fits together, and
# what each setting is for: docs/real-cluster.md. Needs root.
#
# Environment: KBRIDGE_CACHE (default /var/cache/kbridge) holds the builds;
# KBRIDGE_REAL_CLUSTER_REGISTRY_PORT (default 5000) the registry's loopback port.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/real-cluster" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${KBRIDGE_CACHE:-/var/cache/kbridge}
STATE=/var/lib/kbridge-real-cluster
RUN=/run/kbridge-real-cluster
LOGS=$STATE/logs
KUBE_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2} $1=="require" && $2=="k8s.io/kubernetes"{print $3}' "$HERE/kube/go.mod")
BIN=$CACHE/kube-$KUBE_VERSION/bin

# Addresses: all in 198.19.0.0/16 (benchmark space; kube-fixture uses 198.18.0.0/16).
NODE_NAME=kbridge-node
NODE_IP=198.19.0.1
NODE_LINK=kbrnode0
CNI_BRIDGE=kbrcni0
POD_CIDR=198.19.128.0/17
POD_GATEWAY=198.19.128.1
SERVICE_CIDR=198.19.64.0/18
DNS_IP=198.19.64.10
API_PORT=6443
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
REGISTRY=127.0.0.1:${KBRIDGE_REAL_CLUSTER_REGISTRY_PORT:-5000}
PAUSE_IMAGE=kbridge/pause:1
AGENT_IMAGE=kbridge/agent:$(awk -F'"' '/^version *=/{print $2; exit}' "$REPO/Cargo.toml")

KUBECONFIG_ADMIN=$STATE/admin.conf
T0=$(date +%s)

say() { printf '%s\n' "$*" >&2; }
step() { say "[real-cluster +$(($(date +%s) - T0))s] $*"; }
die() {
    say "real-cluster: error: $*"
    # The log a message names is removed with the rest of the state by `down` (which a
    # caller's cleanup may run next): its end is printed here.
    local log
    log=$(printf '%s\n' "$*" | grep -o "$LOGS/[A-Za-z0-9._-]*\.log" | head -1 || true)
    [ -n "$log" ] && log_tail "$log"
    exit 1
}
# log_tail FILE: its last 40 lines (each cut at 400 characters) on stderr, if it exists.
log_tail() {
    [ -f "$1" ] || return 0
    say "-- the last 40 lines of $1:"
    tail -40 "$1" | cut -c1-400 >&2
}

# shellcheck source=real-cluster/build.sh
. "$HERE/build.sh"
# shellcheck source=real-cluster/node.sh
. "$HERE/node.sh"

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    [ $# -ge 1 ] || usage
    local command=$1
    shift
    case "$command" in
    up) up "$@" ;;
    down) down ;;
    status) status ;;
    kubectl-path) echo "$BIN/kubectl" ;;
    api-stop) stop_apiserver ;;
    api-start) start_apiserver ;;
    diagnose) diagnose ;;
    *) usage ;;
    esac
}

up() {
    local demo=false
    for arg in "$@"; do
        case "$arg" in
        --demo) demo=true ;;
        *) die "unknown option '$arg' (up takes only --demo)" ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "the real cluster needs root (it runs containerd, kubelet and kube-proxy)"
    check_prerequisites
    if [ -e "$STATE" ] || [ -e "$RUN" ] || ip link show "$NODE_LINK" >/dev/null 2>&1; then
        step "a previous cluster's state is here: removing it first"
        down
    fi
    check_ports
    check_disk
    mkdir -p "$STATE" "$RUN" "$LOGS"
    build_kube
    build_coredns
    start_registry
    build_images
    prepare_host
    make_certificates
    start_control_plane
    start_node
    start_dns
    wait_node_ready
    if [ "$demo" = true ]; then
        deploy_demo
    fi
    step "up"
    echo "agent-image $REGISTRY/$AGENT_IMAGE"
    echo "ready $KUBECONFIG_ADMIN"
}

check_prerequisites() {
    local missing=() tool
    for tool in etcd containerd containerd-shim-runc-v2 runc iptables conntrack buildah \
        docker-registry gcc cargo curl ip; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ -x /usr/lib/cni/bridge ] || missing+=("/usr/lib/cni/bridge")
    [ -x /usr/local/go/bin/go ] || command -v go >/dev/null 2>&1 || missing+=("go")
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing: ${missing[*]}. Install them with:
    apt-get install -y containerd runc containernetworking-plugins etcd-server iptables conntrack buildah docker-registry gcc curl iproute2
and Go 1.24 or newer at /usr/local/go, and Rust (cargo)."
    fi
}

# Images are unpacked and logs written under /var/lib: with the disk nearly full, containerd
# cannot unpack an image and pods wait in ContainerCreating with no error a test would see,
# and the kubelet evicts at 1 % free. Refuse to start instead.
NEED_FREE_MIB=4096
check_disk() {
    local free
    free=$(df -Pm "$(dirname "$STATE")" | awk 'NR == 2 {print $4}')
    if [ -n "$free" ] && [ "$free" -lt "$NEED_FREE_MIB" ]; then
        die "only ${free} MiB free on $(dirname "$STATE"); the cluster needs ${NEED_FREE_MIB} MiB (images, logs, pods). Free space (e.g. cargo clean, old target directories) and retry"
    fi
}

# A port another program holds would make a component fail half-way: say which one first.
check_ports() {
    local port
    for port in "${REGISTRY##*:}" "${ETCD_CLIENT##*:}" "${ETCD_PEER##*:}" 10248 10249 10250 10256 10257 10259; do
        if ss -Htln "( sport = :$port )" | grep -q .; then
            die "port $port is taken by another program ($(ss -Htlnp "( sport = :$port )" | awk '{print $NF}' | head -1)); stop it, or for the registry set KBRIDGE_REAL_CLUSTER_REGISTRY_PORT"
        fi
    done
}

# Everything `down` would remove that explains a failure, printed before it is gone: what
# the API server says about the node, pods and events, and the last lines of each log.
diagnose() {
    local kubectl=(timeout 20 "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")
    say "== real-cluster diagnose: $(date -u +%FT%TZ)"
    status >&2 || true
    say "-- nodes"
    "${kubectl[@]}" get nodes -o wide >&2 || true
    "${kubectl[@]}" describe nodes 2>&1 | sed -n '/^Conditions:/,/^Addresses:/p;/^Allocated resources:/,/^Events:/p' >&2 || true
    say "-- pods (all namespaces)"
    "${kubectl[@]}" get pods -A -o wide >&2 || true
    say "-- the 60 latest events"
    "${kubectl[@]}" get events -A --sort-by=.lastTimestamp 2>&1 | tail -60 >&2 || true
    local log
    for log in kubelet containerd kube-proxy kube-apiserver registry; do
        log_tail "$LOGS/$log.log"
    done
    say "-- memory and disk"
    free -m >&2 || true
    df -h / "$STATE" 2>&1 | sort -u >&2 || true
}

main "$@"
