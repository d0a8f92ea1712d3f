#!/usr/bin/env bash
# Builds this machine's Linux release binaries, both fully static, into OUTDIR:
# OUTDIR/kbridge and OUTDIR/kbridge-agent. The release workflow
# (.github/workflows/release.yml) runs it on an x86_64 and on an aarch64 runner.
#
# Static glibc (`+crt-static` on the *-linux-gnu target), as agent/build-static.sh builds
# the agent and explains: no musl toolchain needed. `--target` is given so that RUSTFLAGS
# applies to the binaries only, not to build scripts and proc macros.
#
# Usage: scripts/build-release-linux.sh OUTDIR
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
target=$(rustc -vV | sed -n 's/^host: //p')
case "$target" in
    *-unknown-linux-gnu) ;;
    *) echo "error: static release binaries are built on Linux (glibc) hosts; this is $target" >&2; exit 1 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$root/target}

cd "$root"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p kbridge -p kbridge-agent

mkdir -p "$out"
for name in kbridge kbridge-agent; do
    bin="$target_dir/$target/release/$name"
    # ldd says "statically linked" (static-pie) or "not a dynamic executable" for a
    # static binary; anything else lists shared libraries.
    deps=$(ldd "$bin" 2>&1 || true)
    case "$deps" in
        *"statically linked"*|*"not a dynamic executable"*) ;;
        *) echo "error: $bin needs shared libraries: $deps" >&2; exit 1 ;;
    esac
    cp "$bin" "$out/$name"
    strip "$out/$name" 2>/dev/null || true
done
"$out/kbridge" --version
ls -l "$out"
