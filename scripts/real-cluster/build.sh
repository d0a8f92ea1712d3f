# Builds what the real test cluster runs, cached outside the repository (sourced by
# scripts/real-cluster.sh; see docs/real-cluster.md).
#
#   build_kube       kube-apiserver, -controller-manager, -scheduler, kubelet, kube-proxy,
#                    kubectl, kubeadm from the k8s.io/kubernetes module (scripts/real-cluster/kube)
#   build_coredns    CoreDNS with the plugins a one-node cluster needs (scripts/real-cluster/coredns)
#   build_images     the pause, agent and sample-app images, pushed to the loopback registry
#
# Each build is keyed by what goes into it (module files, flags, sources), so a warm `up`
# only checks stamps.

# The Go toolchain: the machine's own (/usr/local/go), never an older one from Debian.
go_cmd() {
    local go=go
    [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    GOTOOLCHAIN=local GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=readonly \
        CGO_ENABLED=0 "$go" "$@"
}

# stamp_ok NAME KEY: whether the build NAME was last made from KEY.
stamp_ok() { [ -f "$CACHE/stamps/$1" ] && [ "$(cat "$CACHE/stamps/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$CACHE/stamps" && printf '%s' "$2" >"$CACHE/stamps/$1"; }

key_of() { cat "$@" | sha256sum | cut -c1-16; }

build_kube() {
    local mod="$HERE/kube" minor
    minor=$(printf '%s' "$KUBE_VERSION" | cut -d. -f2)
    local ld="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local key
    key=$(printf '%s\n' "$ld" | cat - "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
    local out="$CACHE/kube-$KUBE_VERSION/bin"
    if stamp_ok "kube-$KUBE_VERSION" "$key" && [ -x "$out/kubelet" ]; then
        step "Kubernetes $KUBE_VERSION binaries: cached in $out"
        return
    fi
    step "building Kubernetes $KUBE_VERSION from the Go module proxy (cold: about 7 min on 2 cores; cached afterwards)"
    mkdir -p "$out"
    local cmds=() c
    for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm; do
        cmds+=("k8s.io/kubernetes/cmd/$c")
    done
    (cd "$mod" && go_cmd build -trimpath -ldflags "$ld" -o "$out/" "${cmds[@]}") \
        >"$LOGS/build-kube.log" 2>&1 \
        || die "building Kubernetes failed; see $LOGS/build-kube.log"
    stamp_set "kube-$KUBE_VERSION" "$key"
}

build_coredns() {
    local mod="$HERE/coredns" out="$CACHE/coredns/coredns" key
    key=$(key_of "$mod/go.mod" "$mod/go.sum" "$mod/main.go")
    if stamp_ok coredns "$key" && [ -x "$out" ]; then
        step "CoreDNS: cached"
        return
    fi
    step "building CoreDNS"
    mkdir -p "$(dirname "$out")"
    (cd "$mod" && go_cmd build -trimpath -ldflags "-s -w" -o "$out" .) >"$LOGS/build-coredns.log" 2>&1 \
        || die "building CoreDNS failed; see $LOGS/build-coredns.log"
    stamp_set coredns "$key"
}

# Static binaries (glibc +crt-static, as agent/build-static.sh explains) for images on an
# empty base: the agent and the sample apps, in a target directory kept in the cache.
build_static_binaries() {
    step "building static kbridge-agent, todo-api, stats-api (release)"
    (cd "$REPO" && CARGO_TARGET_DIR="$CACHE/cargo-static" \
        RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release --target x86_64-unknown-linux-gnu \
        -p kbridge-agent -p todo-api -p stats-api) >"$LOGS/build-static.log" 2>&1 \
        || die "building the static binaries failed; see $LOGS/build-static.log"
    STATIC_BIN="$CACHE/cargo-static/x86_64-unknown-linux-gnu/release"
}

buildah_cmd() {
    buildah --storage-driver vfs --root "$CACHE/buildah/root" --runroot "$RUN/buildah" "$@"
}

# image_from_binary NAME BINARY USER: an image of one binary on an empty base, run as USER.
image_from_binary() {
    local name=$1 binary=$2 user=$3 ctr
    ctr=$(buildah_cmd from scratch)
    buildah_cmd copy "$ctr" "$binary" "/$(basename "$binary")" >/dev/null
    buildah_cmd config --entrypoint "[\"/$(basename "$binary")\"]" --user "$user" "$ctr"
    buildah_cmd commit --quiet --rm "$ctr" "$name" >/dev/null
}

push_image() {
    buildah_cmd push --quiet --tls-verify=false "$1" "docker://$REGISTRY/$1" >/dev/null
}

build_images() {
    build_static_binaries
    step "building images and pushing them to the registry at $REGISTRY"
    mkdir -p "$CACHE/pause"
    gcc -static -O2 -o "$CACHE/pause/pause" "$HERE/pause.c" || die "building the pause binary failed (gcc and libc6-dev are needed)"
    image_from_binary "$PAUSE_IMAGE" "$CACHE/pause/pause" 65535:65535
    image_from_binary "kbridge-samples/todo-api:1.0" "$STATIC_BIN/todo-api" 65532:65532
    image_from_binary "kbridge-samples/stats-api:1.0" "$STATIC_BIN/stats-api" 65532:65532
    local image
    for image in "$PAUSE_IMAGE" kbridge-samples/todo-api:1.0 kbridge-samples/stats-api:1.0; do
        push_image "$image" || die "pushing $image to $REGISTRY failed; see $LOGS/registry.log"
    done
    # Earlier builds of the same names are untagged now: keep the cache from growing.
    buildah_cmd rmi --prune >/dev/null 2>&1 || true
    # The agent image the way users make theirs: `kbridge agent push` builds agent/Dockerfile's
    # image in-process and pushes it through the registry API, so every session on this
    # cluster pulls what that command pushed.
    push_agent_image
}

# The kbridge that pushes the agent image: $KBRIDGE_BIN, else the workspace's debug build.
push_agent_image() {
    local kbridge="${KBRIDGE_BIN:-$REPO/target/debug/kbridge}"
    if [ ! -x "$kbridge" ]; then
        step "building kbridge (to push the agent image)"
        (cd "$REPO" && cargo build -p kbridge) >"$LOGS/build-kbridge.log" 2>&1 \
            || die "building kbridge failed; see $LOGS/build-kbridge.log"
    fi
    step "kbridge agent push $REGISTRY/$AGENT_IMAGE"
    "$kbridge" agent push "$REGISTRY/$AGENT_IMAGE" --agent-binary "$STATIC_BIN/kbridge-agent" \
        >"$LOGS/agent-push.log" 2>&1 \
        || die "kbridge agent push failed; see $LOGS/agent-push.log"
}
