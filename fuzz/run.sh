#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) on the stable toolchain and prints the
# last status line of each (executions, coverage); a crash stops with its input saved in
# fuzz/artifacts/. Needs `cargo install cargo-fuzz --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
for target in $(cargo fuzz list); do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  cargo fuzz run --sanitizer none -O "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096 >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
  echo "$target: $(grep -E '^(#[0-9]+|Done)' "$log" | tail -1)"
  rm -f "$log"
done
