#!/usr/bin/env bash
# Set up the Python bindings (`import jko`) in a virtual environment at .venv, and optionally
# run their tests.
#
#   scripts/setup-python.sh          create/refresh .venv, install maturin, numpy, pytest, and
#                                    build + install the extension (release build)
#   scripts/setup-python.sh test     the same but a test build (the dev profile: dependencies
#                                    optimised as in `cargo test`), then run the pytest suite
#   scripts/setup-python.sh compare  the same, then also install POT (for examples/python/compare_pot.py)
#
# Needs only python3 (with the venv module and pip) and the Rust toolchain. Idempotent: an
# existing .venv is reused, pip skips what is installed, and the Rust build is incremental in
# target/python (override with CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
mode="${1:-setup}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# Keep the environment out of git without touching the repository's .gitignore.
[ -f .venv/.gitignore ] || echo '*' > .venv/.gitignore
venv_python="$root/.venv/bin/python"
export VIRTUAL_ENV="$root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

pip_install() {
    "$venv_python" -m pip install --disable-pip-version-check --quiet "$@"
}
pip_install "maturin>=1.8,<2" "numpy>=1.21" "pytest>=7" "zarr>=2.18"
if [ "$mode" = compare ]; then
    pip_install "pot>=0.9"
fi

# An explicit CARGO_TARGET_DIR serves both builds below; by default the extension builds in
# target/python and the CLI in target/ (where `cargo test --workspace` already built it).
cli_target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/python}"
# `maturin develop` builds the extension and installs the package editable: python/jko/ is
# used in place (the compiled jko/_jko.abi3.so is placed beside it, git-ignored). Tests use the
# dev profile, whose settings python/Cargo.toml keeps equal to the root workspace's: in a shared
# target directory (scripts/test.sh) the dependencies `cargo test` compiled are reused.
profile=release
[ "$mode" = test ] && profile=dev
if ! (cd python && maturin develop --profile "$profile" --quiet); then
    # numpy's ndarray and the engine's must be one crate, or arrays do not convert.
    if [ "$(grep -c '^name = "ndarray"$' python/Cargo.lock)" != 1 ]; then
        echo "python/Cargo.lock resolves two ndarray versions; pin numpy's to the engine's:" >&2
        echo "  (cd python && cargo update -p ndarray@<newer> --precise <engine's version>)" >&2
    fi
    exit 1
fi
"$venv_python" -c 'import jko; print("jko", jko.__version__, "installed in .venv; backends:", ", ".join(s["name"] for s in jko.solvers()))'

case "$mode" in
    setup | compare) ;;
    test)
        # The CLI-agreement test runs the engine's own binary on a built-in example.
        if [ -z "${JKO_CLI:-}" ]; then
            CARGO_TARGET_DIR="$cli_target" cargo build --locked --quiet -p jko-cli --bin jko
            export JKO_CLI="$cli_target/debug/jko"
        fi
        "$venv_python" -m pytest -q python/tests
        ;;
    *)
        echo "usage: $0 [setup|test|compare]" >&2
        exit 2
        ;;
esac
