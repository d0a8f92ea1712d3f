#!/usr/bin/env bash
# Packages the extension for one VS Code platform with that platform's kbridge inside, as
# rust-analyzer's extension does: the binary goes to bin/ of the .vsix, where
# src/adapter.ts (`bundledKbridge`) looks first unless the `kbridge.path` setting is set.
#
# Usage: scripts/package-platform.sh TARGET KBRIDGE_BINARY [OUT.vsix]
#   TARGET: linux-x64, linux-arm64, darwin-x64, darwin-arm64 or win32-x64
#           (`vsce package --target`); OUT defaults to kbridge-TARGET.vsix here.
# Needs `npm ci` first (vsce is a dev dependency). The binary is not run: it may be built
# for another system than this one.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 TARGET KBRIDGE_BINARY [OUT.vsix]" >&2
    exit 2
fi
target=$1
binary=$2
case "$target" in
    win32-x64|win32-arm64) name=kbridge.exe ;;
    linux-x64|linux-arm64|darwin-x64|darwin-arm64|alpine-x64|alpine-arm64) name=kbridge ;;
    *) echo "error: unknown target '$target' (linux-x64, linux-arm64, darwin-x64, darwin-arm64, win32-x64)" >&2; exit 2 ;;
esac
if [ ! -f "$binary" ]; then
    echo "error: no kbridge binary at $binary" >&2
    exit 1
fi
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
package_dir=$(cd "$(dirname "$0")/.." && pwd)
out=${3:-$package_dir/kbridge-$target.vsix}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

cd "$package_dir"
if [ ! -x node_modules/.bin/vsce ]; then
    echo "error: vsce is not installed: run \`npm ci\` in $package_dir first" >&2
    exit 1
fi
# bin/ exists only while packaging, so the universal `npm run package` never ships one.
rm -rf bin
mkdir bin
trap 'rm -rf "$package_dir/bin"' EXIT
cp "$binary" "bin/$name"
chmod 0755 "bin/$name"
# Without --no-dependencies: the runtime dependency (vscode-languageclient) ships too.
node_modules/.bin/vsce package --target "$target" \
    --allow-missing-repository --skip-license -o "$out"
echo "packaged $out ($target, bin/$name from $binary)"
