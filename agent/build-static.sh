#!/bin/sh
# Builds a fully static kbridge-agent for the FROM-scratch image (agent/Dockerfile).
#
# Static glibc rather than musl: the musl target cannot be installed on machines without rustup
# downloads, while the x86_64-unknown-linux-gnu target with `+crt-static` links glibc's static
# archives (libc6-dev) that every Debian/Ubuntu build box already has. `--target` is given
# explicitly so that RUSTFLAGS applies to the agent only, not to build scripts and proc macros.
#
# Name resolution: a static glibc cannot load NSS modules, so the agent resolves through glibc's
# built-in files+dns fallback (/etc/hosts and /etc/resolv.conf, which Kubernetes mounts into every
# container); that is all a pod needs.
#
# Usage: agent/build-static.sh [OUTPUT]   (default: target/kbridge-agent-static)
# The target is this machine's (x86_64 or aarch64 Linux, glibc); KBRIDGE_TARGET names another.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target_dir/kbridge-agent-static}
target=${KBRIDGE_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}

cd "$root"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p kbridge-agent \
    || RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$target" -p kbridge-agent
bin="$target_dir/$target/release/kbridge-agent"

# Verify: no dynamic section, no interpreter.
if command -v file >/dev/null 2>&1; then
    file "$bin"
    file "$bin" | grep -Eq "statically linked|static-pie linked" || { echo "error: $bin is not statically linked" >&2; exit 1; }
fi
# ldd prints "statically linked" (static-pie) or "not a dynamic executable"; anything else lists
# shared libraries the empty image would not have.
deps=$(ldd "$bin" 2>&1 || true)
echo "ldd: $deps"
case "$deps" in
    *"statically linked"*|*"not a dynamic executable"*) ;;
    *) echo "error: $bin needs shared libraries" >&2; exit 1 ;;
esac

mkdir -p "$(dirname "$out")"
cp "$bin" "$out"
strip "$out" 2>/dev/null || true
ls -l "$out"
# The Dockerfile copies agent/kbridge-agent from the build context.
cp "$out" "$here/kbridge-agent"
echo "static agent at $out (and $here/kbridge-agent for 'buildah bud agent/')"
