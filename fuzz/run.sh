#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) on the stable toolchain and prints the
# last status line of each (executions, coverage); a crash stops with its input saved in
# fuzz/artifacts/. Needs `cargo install cargo-fuzz --locked`.
#
#   fuzz/run.sh [SECONDS] [--keep-corpus]
#
# Each target starts from an empty corpus (fuzz/corpus/<target> is emptied first), so the
# figures of one run compare with another's, as fuzz/RESULTS.md records them;
# --keep-corpus continues from the corpus the last run left instead.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
keep=false
for arg in "$@"; do
  case "$arg" in
    --keep-corpus) keep=true ;;
    *) seconds=$arg ;;
  esac
done
for target in $(cargo fuzz list); do
  if [ "$keep" = false ]; then rm -rf "fuzz/corpus/$target"; fi
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  cargo fuzz run --sanitizer none -O "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096 >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
  echo "$target: $(grep -E '^(#[0-9]+|Done)' "$log" | tail -1)"
  rm -f "$log"
done
