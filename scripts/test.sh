#!/usr/bin/env bash
# Run every test: the Rust workspace (unit, integration and doc tests of the engine and of every
# backend), then the Python bindings' pytest suite (scripts/setup-python.sh creates .venv and
# builds the extension on first use). Slow studies are #[ignore]d: run them with
# `cargo test --release --workspace -- --ignored`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
scripts/setup-python.sh test
