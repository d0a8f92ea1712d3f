#!/usr/bin/env bash
# Installs real VS Code for the UI tests: `npm ci` of code-server (VS Code's workbench and
# extension host for the browser) and playwright-core (drives Debian's Chromium).
#
# code-server's install builds VS Code's native modules (node-pty, kerberos, native-keymap,
# ...) against the system's Node headers, and @vscode/ripgrep would download its binary
# from GitHub, which this machine cannot reach. So: Debian packages first (see the list
# below; .ci/run installs them), headers from /usr, and ripgrep's download cache seeded
# with Debian's `rg` so its install script finds it there.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in rg node npm make g++ pkg-config python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
for header in /usr/include/gssapi/gssapi.h /usr/include/X11/Xlib.h /usr/include/X11/extensions/XKBfile.h; do
  [ -e "$header" ] || missing+=("$header")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ui-test/install.sh: missing ${missing[*]}; install the Debian packages:" >&2
  echo "  apt-get install -y chromium ripgrep nodejs npm make g++ pkg-config python3 libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev" >&2
  exit 1
fi

# @vscode/ripgrep's install script looks in $TMPDIR/vscode-ripgrep-cache-<its version>/ for
# the release archive before downloading it. The versions are the ones code-server's VS Code
# pins (lib/vscode/npm-shrinkwrap.json); a new code-server may need them updated.
rg_package=1.15.11
rg_release=v13.0.0-10
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cache="$scratch/vscode-ripgrep-cache-$rg_package"
mkdir -p "$cache/stage"
cp "$(command -v rg)" "$cache/stage/rg"
tar czf "$cache/ripgrep-$rg_release-x86_64-unknown-linux-musl.tar.gz" -C "$cache/stage" rg

# npm 11 refuses the --unsafe-perm flag code-server asks root for; the setting still works.
TMPDIR="$scratch" npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=/usr \
  npm ci --no-audit --no-fund --loglevel=error
test -x node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg
echo "ui-test: code-server $(node -p 'require("code-server/package.json").version') installed"
