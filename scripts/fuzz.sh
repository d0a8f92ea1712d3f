#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS_PER_TARGET seconds
# (default 60) on a copy of its checked-in corpus (fuzz/corpus/<target>, never grown here).
# Prints the executions of each target and fails if any target crashes, naming the input
# that reproduces it.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_SANITIZER=address bash scripts/fuzz.sh 600   # slower, with AddressSanitizer
#
# The code under test is safe Rust, whose bugs show as panics and failed assertions, so
# targets are built without a sanitizer by default: AddressSanitizer costs 3-5x the
# executions (measured: dap_codec 1.6k/s against 5.9k/s) for no check these targets need.
# cargo-fuzz is installed into /var/cache/kbridge/cargo-tools, builds go to
# /var/cache/kbridge/fuzz-target; both are kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
cache=/var/cache/kbridge
tools="$cache/cargo-tools"
cargo_fuzz_version=0.13.2
export CARGO_TARGET_DIR="$cache/fuzz-target"

# libFuzzer needs nightly rustc flags: the nightly toolchain when there is one, else stable
# told to accept them.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  cargo=(cargo)
  export RUSTC_BOOTSTRAP=1
fi

if [[ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
  echo "installing cargo-fuzz $cargo_fuzz_version into $tools"
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked \
    --root "$tools" --quiet
fi
export PATH="$tools/bin:$PATH"

cargo fmt --manifest-path fuzz/Cargo.toml -- --check

start=$SECONDS
"${cargo[@]}" fuzz build --fuzz-dir fuzz --target-dir "$CARGO_TARGET_DIR" \
  --sanitizer "$sanitizer" --debug-assertions
echo "fuzz targets built in $((SECONDS - start)) s (sanitizer: $sanitizer)"

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/$triple/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/kbridge-fuzz.XXXXXX")"
failed=()
passed=0
for target in $("${cargo[@]}" fuzz list --fuzz-dir fuzz); do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  cp -R "fuzz/corpus/$target/." "$work/$target/corpus/"
  log="$work/$target/log"
  # -timeout: an input that takes 10 s is a hang, reported like a crash.
  if "$bin_dir/$target" -max_total_time="$seconds" -timeout=10 \
    -artifact_prefix="$work/$target/artifacts/" "$work/$target/corpus" >"$log" 2>&1; then
    # libFuzzer's last line: "Done 123456 runs in 61 second(s)".
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' "$log")"
    echo "$target: ${runs:-no final stats (see $log)}"
    passed=$((passed + 1))
  else
    failed+=("$target")
    echo "$target: FAILED"
    grep -E -A12 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -40 || true
    for input in "$work/$target/artifacts"/*; do
      [[ -e "$input" ]] || continue
      echo "reproducer: $input"
      echo "  rerun: $bin_dir/$target $input"
    done
    echo "full log: $log"
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]}" >&2
fi
echo "fuzz: $passed passed, ${#failed[@]} failed"
((${#failed[@]} == 0)) || exit 1
rm -rf "$work"
