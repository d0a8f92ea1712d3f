#!/usr/bin/env bash
# Runs the Neovim plugin's tests in a headless Neovim (Debian's `neovim` package, >= 0.7)
# with no user config and a stand-in for nvim-dap.
set -euo pipefail
cd "$(dirname "$0")/.."
nvim --version | head -1
nvim --headless -u NONE -i NONE -n -c 'luafile test/kbridge_test.lua'
