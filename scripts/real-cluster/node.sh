# Starting and stopping the real test cluster's pieces (sourced by scripts/real-cluster.sh,
# which sets the addresses and paths; docs/real-cluster.md explains the choices).

# spawn NAME CMD...: runs CMD in its own session, output to $LOGS/NAME.log, pid to $RUN/NAME.pid.
spawn() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# wait_until WHAT SECONDS CMD...: retries CMD with a growing pause (50 ms doubling to 1 s)
# until it succeeds; after SECONDS, fails naming WHAT and the log to read.
wait_until() {
    local what=$1 limit=$2
    shift 2
    local deadline=$(($(date +%s) + limit)) pause=0.05
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$what did not happen within ${limit}s; logs are in $LOGS"
        sleep "$pause"
        case "$pause" in 0.05) pause=0.1 ;; 0.1) pause=0.2 ;; 0.2) pause=0.5 ;; *) pause=1 ;; esac
    done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
kubectl_super() { "$BIN/kubectl" --kubeconfig "$STATE/super-admin.conf" "$@"; }

start_registry() {
    step "starting the image registry on $REGISTRY"
    mkdir -p "$STATE/registry"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
EOF
    spawn registry docker-registry serve "$STATE/registry.yml"
    wait_until "the registry answering on $REGISTRY" 20 curl -fsS "http://$REGISTRY/v2/"
}

prepare_host() {
    step "preparing the host: sysctls, node address $NODE_IP on $NODE_LINK"
    # Forwarding between pods and Services; bridged pod traffic through iptables (kube-proxy);
    # kubelet and containerd take many inotify instances.
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
    sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288
    # The node address: an address-only bridge (no ports), reachable from pods through
    # their gateway; it never leaves the machine.
    ip link add "$NODE_LINK" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_LINK"
    ip link set "$NODE_LINK" up
    # The CNI configuration containerd reads: a bridge with host-local addresses.
    mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
    cat >"$STATE/cni/net.d/10-kbridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kbridge",
  "plugins": [
    {
      "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    # Pods with dnsPolicy Default get no resolver: the machine's own is not theirs to use.
    : >"$STATE/resolv.conf"
}

make_certificates() {
    step "certificates and kubeconfigs (kubeadm, offline)"
    cat >"$STATE/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: $NODE_IP, bindPort: $API_PORT}
nodeRegistration:
  name: $NODE_NAME
  criSocket: unix://$RUN/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $KUBE_VERSION
clusterName: kbridge-real
certificatesDir: $STATE/pki
controlPlaneEndpoint: $NODE_IP:$API_PORT
networking: {serviceSubnet: $SERVICE_CIDR, podSubnet: $POD_CIDR, dnsDomain: cluster.local}
apiServer: {certSANs: [127.0.0.1, localhost]}
EOF
    "$BIN/kubeadm" init phase certs all --config "$STATE/kubeadm.yaml" >"$LOGS/kubeadm.log" 2>&1 \
        || die "kubeadm could not make the certificates; see $LOGS/kubeadm.log"
    "$BIN/kubeadm" init phase kubeconfig all --config "$STATE/kubeadm.yaml" --kubeconfig-dir "$STATE" \
        >>"$LOGS/kubeadm.log" 2>&1 || die "kubeadm could not write the kubeconfigs; see $LOGS/kubeadm.log"
    local user
    for user in kube-proxy coredns; do
        "$BIN/kubeadm" kubeconfig user --config "$STATE/kubeadm.yaml" --client-name "system:$user" \
            >"$STATE/$user.conf" 2>>"$LOGS/kubeadm.log" || die "kubeadm could not write $user.conf"
    done
}

# The API server alone, also restarted on its own by `real-cluster.sh api-start`.
start_apiserver() {
    step "starting kube-apiserver on https://$NODE_IP:$API_PORT"
    local pki=$STATE/pki
    spawn kube-apiserver "$BIN/kube-apiserver" \
        --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
        --etcd-servers "http://$ETCD_CLIENT" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --allow-privileged=true --anonymous-auth=true --profiling=false \
        --client-ca-file "$pki/ca.crt" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types InternalIP \
        --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
        --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
        --requestheader-username-headers X-Remote-User \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR"
    wait_until "kube-apiserver ready" 120 curl -fsS --cacert "$pki/ca.crt" "https://$NODE_IP:$API_PORT/readyz"
}

# Stops the API server alone (`real-cluster.sh api-stop`, for the chaos tests): everything
# else keeps running, as when a managed control plane goes away for a while.
stop_apiserver() {
    local pid
    pid=$(cat "$RUN/kube-apiserver.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "kube-apiserver is not running"
    # Its graceful shutdown drains requests for up to 30 s; an outage is abrupt.
    kill -TERM "$pid"
    local deadline=$(($(date +%s) + 2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { kill -KILL "$pid" 2>/dev/null || true; break; }
        sleep 0.1
    done
    step "kube-apiserver stopped"
}

start_control_plane() {
    step "starting etcd"
    spawn etcd etcd --name "$NODE_NAME" --data-dir "$STATE/etcd" \
        --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
        --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
        --initial-cluster "$NODE_NAME=http://$ETCD_PEER" --listen-metrics-urls "" \
        --quota-backend-bytes 1073741824 --snapshot-count 10000
    wait_until "etcd serving on $ETCD_CLIENT" 30 curl -fsS "http://$ETCD_CLIENT/health"

    start_apiserver
    local pki=$STATE/pki

    # kubeadm's admin.conf user is in group kubeadm:cluster-admins, which only a full
    # `kubeadm init` binds: bind it with the super-admin credentials, once.
    kubectl_super create clusterrolebinding kubeadm:cluster-admins --clusterrole cluster-admin \
        --group kubeadm:cluster-admins >/dev/null

    step "starting kube-controller-manager and kube-scheduler"
    spawn kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/controller-manager.conf" \
        --authentication-kubeconfig "$STATE/controller-manager.conf" \
        --authorization-kubeconfig "$STATE/controller-manager.conf" \
        --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
        --client-ca-file "$pki/ca.crt" --root-ca-file "$pki/ca.crt" \
        --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
        --service-account-private-key-file "$pki/sa.key" \
        --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
        --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
        --controllers '*,bootstrapsigner,tokencleaner'
    spawn kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$STATE/scheduler.conf" \
        --authentication-kubeconfig "$STATE/scheduler.conf" \
        --authorization-kubeconfig "$STATE/scheduler.conf" \
        --bind-address 127.0.0.1 --leader-elect=false
}

start_node() {
    step "starting containerd"
    cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY/$PAUSE_IMAGE"
  # This machine refuses negative oom_score_adj (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  # Every image comes from the loopback registry: docker.io names (the sample apps' manifests)
  # through a mirror, the registry's own names directly, over plain HTTP.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://$REGISTRY"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY"]
    endpoint = ["http://$REGISTRY"]
EOF
    spawn containerd containerd --config "$STATE/containerd.toml"
    wait_until "containerd serving on $RUN/containerd.sock" 30 test -S "$RUN/containerd.sock"

    step "starting kubelet"
    mkdir -p "$STATE/kubelet"
    cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RUN/containerd.sock
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
failSwapOn: false
# The kubelet may not lower its own oom_score_adj here (see containerd above).
oomScoreAdj: 0
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
serializeImagePulls: false
# containerd 1.6 does not pin the sandbox image: image GC must never remove it.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
staticPodPath: ""
EOF
    spawn kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.conf" \
        --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" \
        --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"

    step "starting kube-proxy (iptables)"
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.conf}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# Leave the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    spawn kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

start_dns() {
    step "starting CoreDNS on $NODE_IP:53 (Service kube-dns $DNS_IP)"
    kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: kbridge-real-cluster}
addressType: IPv4
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
    cat >"$STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:10253
    ready 127.0.0.1:10254
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.conf
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
    spawn coredns "$CACHE/coredns/coredns" -conf "$STATE/Corefile"
    wait_until "CoreDNS ready" 60 curl -fsS http://127.0.0.1:10254/ready
}

node_ready() {
    kubectl_admin get node "$NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

wait_node_ready() {
    step "waiting for node $NODE_NAME to be Ready"
    wait_until "node $NODE_NAME Ready (see kubelet.log, containerd.log)" 120 node_ready
    wait_until "the default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
}

deploy_demo() {
    step "deploying the sample apps in namespace todo"
    kubectl_admin apply -f "$REPO/fixtures/apps/manifests/todo.yaml" >/dev/null
    local d
    for d in todo-api stats-api; do
        kubectl_admin -n todo rollout status "deployment/$d" --timeout=180s >/dev/null \
            || die "deployment/$d in namespace todo did not roll out; kubectl -n todo describe pods"
    done
}

status() {
    local name pid any=false
    for name in registry etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
        pid=$(cat "$RUN/$name.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "$name running (pid $pid)"
            any=true
        else
            echo "$name not running"
        fi
    done
    [ "$any" = true ] && [ -f "$KUBECONFIG_ADMIN" ] && echo "kubeconfig $KUBECONFIG_ADMIN"
    return 0
}

# Every pid of ours: by pid file, and by command line naming our state (a crashed `up` may
# have left processes whose pid files are gone).
our_pids() {
    local f
    for f in "$RUN"/*.pid; do
        [ -f "$f" ] && cat "$f"
    done
    pgrep -f -- "$STATE|$RUN" || true
}

stop_processes() {
    local pids
    pids=$(our_pids | sort -u | grep -vx "$$" || true)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    local deadline=$(($(date +%s) + 5))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        # shellcheck disable=SC2086
        kill -0 $pids 2>/dev/null || return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

# The pods' containers: runc knows every one (its state is under $RUN/runc).
stop_containers() {
    [ -d "$RUN/runc" ] || return 0
    local root id
    for root in "$RUN"/runc/*; do
        [ -d "$root" ] || continue
        for id in $(runc --root "$root" list -q 2>/dev/null); do
            runc --root "$root" kill "$id" KILL >/dev/null 2>&1 || true
            runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
}

unmount_under() {
    local dir
    for dir in "$@"; do
        # Deepest first.
        awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
    done
}

remove_network() {
    local ns
    # Pod network namespaces containerd made (bind mounts under /run/netns, name cni-*),
    # once no process is left in them.
    for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && ip netns delete "$ns" 2>/dev/null || true
    done
    ip link delete "$CNI_BRIDGE" 2>/dev/null || true
    ip link delete "$NODE_LINK" 2>/dev/null || true
    # kube-proxy's and the kubelet's chains.
    if [ -x "$BIN/kube-proxy" ]; then
        "$BIN/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true
    fi
    local table chain
    for table in filter nat mangle; do
        iptables-save -t "$table" 2>/dev/null | awk '/^-A / && /KUBE-|CNI-/' | sed 's/^-A/-D/' |
            while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
        for chain in $(iptables-save -t "$table" 2>/dev/null | awk -F'[: ]' '/^:(KUBE-|CNI-)/{print $2}'); do
            iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables-save -t "$table" 2>/dev/null | awk -F'[: ]' '/^:(KUBE-|CNI-)/{print $2}'); do
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}

# Pod cgroups the kubelet made (cgroup v1: one tree per controller), leaves first.
remove_cgroups() {
    local controller
    for controller in /sys/fs/cgroup/*/; do
        [ -d "${controller}kubepods" ] || continue
        find "${controller}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

down() {
    [ "$(id -u)" = 0 ] || die "taking the real cluster down needs root"
    step "stopping the cluster's processes"
    stop_processes
    stop_containers
    # Shims outlive containerd; they hold the containers' mounts.
    pkill -KILL -f "containerd-shim-runc-v2 .*$RUN" 2>/dev/null || true
    unmount_under "$STATE" "$RUN"
    remove_network
    remove_cgroups
    rm -rf "$STATE" "$RUN"
    step "down: processes, pods, network, iptables chains, cgroups and state removed"
}
