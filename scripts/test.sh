#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit and integration tests (aws-sdk-rust
# against a real firelake), then the Python tests (boto3, the AWS CLI, pandas, s3fs).
# Creates .venv with the pinned clients on first use, and installs the pytest plugin of python/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/requirements.txt; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/requirements.txt
fi
# The pytest plugin (python/), which the Python tests use: installed afresh every run, as
# a user installs it (not editable), so the tests see what `pip install ./python` gives.
.venv/bin/pip install --quiet --no-deps --no-build-isolation --force-reinstall ./python
rm -rf python/build python/*.egg-info

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# --workspace: the load generator (bench/loadgen) has tests too.
cargo test --locked --workspace -- --skip kill
# The crash tests (plain, partitioned, Lambda) print what they survived and checked.
cargo test --locked --test crash -- --nocapture
# It must also be able to fail: under the test-only fault that publishes objects before
# their last bytes are written (src/store/atomic.rs), it has to find them damaged.
fault_log=$(mktemp)
if FIRELAKE_FAULT=torn-publish cargo test --locked --features fault-injection --test crash kill_at_random_moments >"$fault_log" 2>&1; then
  tail -5 "$fault_log"; echo "test.sh: the crash test passed although published objects were torn" >&2; exit 1
fi
grep -q "damaged objects" "$fault_log" || { tail -30 "$fault_log"; echo "test.sh: under the fault the crash test failed, but not on a damaged object" >&2; exit 1; }
echo "test.sh: under the torn-publish fault the crash test fails as it must: $(grep -o '[0-9]* damaged objects' "$fault_log")"
rm -f "$fault_log"
# The fuzz targets (their own workspace) build and run; this is no fuzzing, see fuzz/RESULTS.md.
CARGO_TARGET_DIR="$PWD/target" cargo build --locked --manifest-path fuzz/Cargo.toml --bins
for source in fuzz/fuzz_targets/*.rs; do
  target=$(basename "$source" .rs)
  target/debug/"$target" -runs=1000 -max_len=4096 >/dev/null 2>&1 || { echo "test.sh: fuzz target $target failed" >&2; exit 1; }
done
# Rebuilt without the fault, for the Python tests.
cargo build --locked
FIRELAKE_BIN="$PWD/target/debug/firelake" .venv/bin/python -m pytest tests/python -q -rs -p no:cacheprovider
