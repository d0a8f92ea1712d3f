#!/usr/bin/env bash
# Runs every editor-client test (called from scripts/test-all.sh). Needs: a built kbridge
# (target/debug/kbridge, or KBRIDGE_BIN), `npm ci` done in vscode/, real VS Code installed
# by vscode/ui-test/install.sh with Debian's chromium, node >= 20, neovim
# >= 0.7, python3 >= 3.11, emacs (its test is skipped without it), cargo, debugpy; the
# lldb-dap and dlv end-to-end cases run when lldb-dap/gcc and dlv/go are installed.
set -euo pipefail
cd "$(dirname "$0")"
kbridge="${KBRIDGE_BIN:-../target/debug/kbridge}"
if [ ! -x "$kbridge" ]; then
  echo "editor-clients/test.sh: no kbridge at $kbridge; run \`cargo build -p kbridge\` first or set KBRIDGE_BIN" >&2
  exit 1
fi
# The tests run from several directories: hand them an absolute path.
KBRIDGE_BIN="$(cd "$(dirname "$kbridge")" && pwd)/$(basename "$kbridge")"
export KBRIDGE_BIN
if [ ! -d vscode/node_modules ]; then
  echo "editor-clients/test.sh: run \`(cd editor-clients/vscode && npm ci)\` first" >&2
  exit 1
fi

echo "== editor-clients: VS Code extension, snippets end to end, Zed/JetBrains/Emacs examples"
(cd vscode && npm test)

echo "== editor-clients: VS Code .vsix packaging (@vscode/vsce)"
# vsce is chatty; show its output only when it fails.
if ! (cd vscode && npm run --silent package) >/tmp/kbridge-vsce.log 2>&1; then
  cat /tmp/kbridge-vsce.log >&2
  exit 1
fi
# Read the whole listing first: `grep -q` stopping early would break the pipe under pipefail.
listing=$(python3 -m zipfile -l vscode/kbridge.vsix)
grep -q 'extension/out/src/extension.js' <<<"$listing"
echo "packaged vscode/kbridge.vsix"

echo "== editor-clients: the extension in real VS Code (code-server in headless Chromium)"
if [ ! -x vscode/ui-test/node_modules/.bin/code-server ]; then
  echo "editor-clients/test.sh: real VS Code is not installed; run \`bash editor-clients/vscode/ui-test/install.sh\` first" >&2
  exit 1
fi
(cd vscode/ui-test && npm test)

echo "== editor-clients: Neovim plugin (headless nvim)"
bash nvim/test/run.sh

echo "== editor-clients: Helix languages.toml"
python3 helix/test_languages.py

echo "== editor-clients: Zed extension (cargo test on the host target)"
(cd zed/extension && cargo test --locked --quiet)
