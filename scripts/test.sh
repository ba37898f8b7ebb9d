#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit and integration tests (aws-sdk-rust
# against a real firelake), then the Python tests (boto3, the AWS CLI, pandas, s3fs).
# Creates .venv with the pinned clients on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/requirements.txt; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/requirements.txt
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --locked -- --skip kill_at_random_moments
# The crash test prints what it survived and checked.
cargo test --locked --test crash -- --nocapture
cargo build --locked
FIRELAKE_BIN="$PWD/target/debug/firelake" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider
