#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration, end-to-end against real
# debuggers and the fixture cluster), the VS Code DebugClient test and the editor clients.
# Needs the tools .ci/run installs (debugpy, lldb-19, Go and Delve, node).
set -euo pipefail
cd "$(dirname "$0")/.."
# End-to-end tests run the built binaries (kbridge, kube-fixture, kbridge-agent).
cargo build --workspace --bins
# --no-fail-fast: one failing test binary does not hide the others' results.
cargo test --workspace --no-fail-fast
(cd tests/vscode-debugclient && npm test)
bash editor-clients/test.sh
