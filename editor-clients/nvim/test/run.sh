#!/usr/bin/env bash
# Runs the Neovim plugin's tests in a headless Neovim (Debian's `neovim` package, >= 0.7)
# with no user config: the unit tests with a stand-in for nvim-dap, then the end-to-end
# test through the real kbridge and debugpy (test/e2e_test.lua; a small DAP client stands
# in for nvim-dap's session, since no nvim-dap can be installed here). As root with the
# workspace binaries built, the end-to-end test also bridges to the fixture cluster,
# which this script starts and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
nvim --version | head -1
nvim --headless -u NONE -i NONE -n -c 'luafile test/kbridge_test.lua'

kbridge="${KBRIDGE_BIN:-}"
bin_dir="$(dirname "${kbridge:-/nonexistent/kbridge}")"
if [ "$(id -u)" = 0 ] && [ -x "$bin_dir/kube-fixture" ] && [ -x "$bin_dir/kbridge-agent" ]; then
  state="$(mktemp -d)"
  ready="$state/ready"
  "$bin_dir/kube-fixture" serve --demo --state-dir "$state/cluster" --agent-bin "$bin_dir/kbridge-agent" \
    >"$ready" 2>"$state/fixture.log" &
  fixture=$!
  # SIGTERM lets the fixture stop its pods and remove its namespaces before the files go.
  trap 'kill -TERM $fixture 2>/dev/null; wait $fixture 2>/dev/null; rm -rf "$state"' EXIT
  for _ in $(seq 1 600); do
    grep -q '^ready ' "$ready" && break
    kill -0 $fixture 2>/dev/null || { cat "$state/fixture.log" >&2; exit 1; }
    sleep 0.2
  done
  grep -q '^ready ' "$ready" || { echo "run.sh: the fixture cluster was not ready in 120 s" >&2; exit 1; }
  export KBRIDGE_TEST_KUBECONFIG="$state/cluster/kubeconfig"
  export TMPDIR="$state"
fi
nvim --headless -u NONE -i NONE -n -c 'luafile test/e2e_test.lua'
KBRIDGE_BIN="${KBRIDGE_BIN:-$(cd ../.. && pwd)/target/debug/kbridge}" nvim --headless -u NONE -i NONE -n -c 'luafile test/lsp_test.lua'
