#!/usr/bin/env bash
# Run every test: the Rust workspace (unit, integration and doc tests of the engine and of every
# backend), then the Python bindings' pytest suite (scripts/setup-python.sh creates .venv and
# builds the extension on first use). Slow studies are #[ignore]d: run them with
# `cargo test --release --workspace -- --ignored`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Unit, integration and CLI tests, then the doc tests. Not `cargo test --workspace` alone: that also
# builds the 21 example binaries (each an optimised link of the engine) and runs nothing in them;
# clippy --all-targets in .ci/run already compiles them, so CI does not link them again here.
cargo test --workspace --locked --tests
cargo test --workspace --locked --doc
# The small robustness matrix: every backend on ordinary problems inside its domain (about a minute
# of CPU). `cargo test` has just built the `jko` binary (test profile: optimised); --check fails on
# any failed run the suite does not list as an expected failure.
target="${CARGO_TARGET_DIR:-$PWD/target}"
"$target/debug/jko" compare data/compare/robust-ci.toml --out "$target/robust-ci" --check
# The Python bindings' tests: the extension is built in this same target directory with the
# profile the tests above used for dependencies (they are not compiled again), and the CLI-agreement
# test reuses the binary built above instead of building the CLI again in the dev profile.
JKO_CLI="$target/debug/jko" CARGO_TARGET_DIR="$target" scripts/setup-python.sh test
