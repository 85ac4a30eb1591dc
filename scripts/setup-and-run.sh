#!/usr/bin/env bash
# Set up a fresh machine and run the built-in example `ou-1d`.
# Needs only the Rust toolchain (cargo) that the machine ships; every dependency is pure Rust
# (Clarabel with its faer linear algebra, faer for sparse factorisations), so no system
# libraries are installed. Optional Python tooling (comparison scripts) is set up by
# scripts/setup-python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
example="${1:-ou-1d}"
out="${2:-out/$example}"
cargo build --release --locked -p jko-cli --bin jko
mkdir -p "$(dirname "$out")"
./target/release/jko example "$example" > "out/$example.toml"
./target/release/jko run "out/$example.toml" --out "$out" --force
echo "wrote $out (rho_NNNNN.npy per step, steps.jsonl, run.json)"
