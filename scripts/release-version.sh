#!/usr/bin/env bash
# Checks that everything a release names agrees on one version, and prints
# `version=X.Y.Z` (for $GITHUB_OUTPUT): the workspace version in Cargo.toml, the versions
# of the internal crates in [workspace.dependencies] (what `cargo publish` writes into the
# published manifests), the VS Code extension's package.json and, when given, the tag
# (`vX.Y.Z`). .ci/run runs it without a tag; .github/workflows/release.yml with the tag.
#
# Usage: scripts/release-version.sh [TAG]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-}

# The first `version = "…"` in [workspace.package].
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
if [ -z "$version" ]; then
    echo "error: no version in [workspace.package] of Cargo.toml" >&2
    exit 1
fi
status=0
for crate in kbridge kbridge-config kbridge-protocol kbridge-agent; do
    dep=$(sed -n "s/^$crate = {.*version = \"\([^\"]*\)\".*/\1/p" "$root/Cargo.toml")
    if [ "$dep" != "$version" ]; then
        echo "error: [workspace.dependencies] $crate has version '$dep', the workspace $version" >&2
        status=1
    fi
done
extension=$(node -p "require('$root/editor-clients/vscode/package.json').version")
if [ "$extension" != "$version" ]; then
    echo "error: editor-clients/vscode/package.json has version $extension, the workspace $version" >&2
    status=1
fi
if [ -n "$tag" ] && [ "$tag" != "v$version" ]; then
    echo "error: the tag $tag does not name the workspace version $version (expected v$version)" >&2
    status=1
fi
[ "$status" -eq 0 ] || exit "$status"
echo "version=$version"
