#!/usr/bin/env bash
# Fuzz the engine's input parsers for a bounded time (issue 8). Not run by CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 120 s; targets: config npy)
#
# Targets (fuzz/fuzz_targets/, harness in fuzz/src/harness.rs):
#   config  arbitrary text -> TOML config parser -> mesh, energy, initial density, backend and
#           checked stepper built as `jko run` builds them (meshes above 2^16 cells skipped);
#   npy     arbitrary bytes -> the .npy reader (jko::config::read_npy_from) -> the array used
#           as mesh mask, cell potential and initial density.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz with
# `cargo install cargo-fuzz --locked` if it is missing. Each target starts from the committed
# seeds (fuzz/seeds/<target>/) plus its own growing corpus (fuzz/corpus/<target>/, not
# committed) with a dictionary (fuzz/dicts/<target>.dict), under AddressSanitizer with debug
# assertions, limits: 2 GB RSS (and per malloc), 10 s per input.
#
# Environment: CARGO_TARGET_DIR (default /work/targets/fuzz-nightly if /work/targets exists,
# else fuzz/target), FUZZ_JOBS (parallel fuzzing processes per target, default 1).
#
# On a crash libFuzzer writes the input to fuzz/artifacts/<target>/{crash,oom,timeout,leak}-*;
# this script then prints how to minimise it and turn it into a regression test:
#   cargo +nightly fuzz tmin <target> <artifact>          # writes minimized-from-* next to it
#   cp fuzz/artifacts/<target>/minimized-from-... data/fuzz/<target>/<short-name>
#   cargo test -p jko --test integration fuzz_regressions             # replays every file in data/fuzz/
# and, if the outcome should be pinned, add the name to the tables in tests/integration/fuzz_regressions.rs.
set -euo pipefail

SECONDS_PER_TARGET="${1:-120}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(config npy)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work/targets ]; then
    export CARGO_TARGET_DIR=/work/targets/fuzz-nightly
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

FUZZ_FLAGS=(--debug-assertions)
echo "== building fuzz targets"
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"

status=0
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/fuzz-$(date +%Y%m%d-%H%M%S).log"
    echo "== fuzzing $target for ${SECONDS_PER_TARGET} s (log: fuzz/$log)"
    before="$(ls "artifacts/$target" | grep -E '^(crash|oom|timeout|leak|slow-unit)-' | sort || true)"
    # With -jobs, libFuzzer writes each job's output to fuzz-<n>.log in the working directory.
    jobs=()
    [ "${FUZZ_JOBS:-1}" -gt 1 ] && jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    set +e
    cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -timeout=10 -max_len=8192 -dict="dicts/$target.dict" -print_final_stats=1 \
        "${jobs[@]}" >"$log" 2>&1
    rc=$?
    set -e
    [ ${#jobs[@]} -gt 0 ] && cat fuzz-*.log >>"$log" && rm -f fuzz-*.log
    grep -aE '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|Done )' "$log" | sort -u | tail -n 12 || true
    after="$(ls "artifacts/$target" | grep -E '^(crash|oom|timeout|leak|slow-unit)-' | sort || true)"
    new="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
    if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
        status=1
        echo "!! $target: libFuzzer exited with $rc; the failure:"
        grep -E -A 12 'ERROR: libFuzzer|panicked at|ERROR: AddressSanitizer|==ERROR' "$log" | head -n 40 || true
        for a in $new; do
            cat <<EOF
!! artifact: fuzz/artifacts/$target/$a
   reproduce:  (cd fuzz && cargo +nightly fuzz run ${FUZZ_FLAGS[*]} $target artifacts/$target/$a)
   minimise:   (cd fuzz && cargo +nightly fuzz tmin ${FUZZ_FLAGS[*]} $target artifacts/$target/$a)
   regression: cp fuzz/artifacts/$target/minimized-from-* data/fuzz/$target/<short-name>
               then cargo test -p jko --test integration fuzz_regressions (replays data/fuzz/$target/*),
               pin the expected outcome in tests/integration/fuzz_regressions.rs, and fix the bug.
EOF
        done
    else
        echo "== $target: no crash in ${SECONDS_PER_TARGET} s"
    fi
done
exit "$status"
