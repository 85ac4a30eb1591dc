#!/usr/bin/env bash
# Behaviour check across a change: run every built-in example with every backend for a few
# steps with two `jko` binaries (a baseline build, e.g. of main, and this tree's) and compare
# every rho_NNNNN.npy byte for byte. A pair that fails with both binaries (a term or a mesh the
# backend does not treat, a known limitation) is reported, not compared. The 1D examples also run
# as `flow` checked against `newton` every 2nd step (`check_tol = 1e-3`: some steps fall back).
#
#   scripts/check-outputs.sh BASELINE_JKO [NEW_JKO] [STEPS]
#
# Exits non-zero when any density differs or only one binary fails.
set -euo pipefail
base="$1"
new="${2:-./target/release/jko}"
steps="${3:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
backends="$("$new" solvers | grep -E '^[a-z]' | awk '{print $1}')"
examples="$("$new" example | awk '{print $1}')"
cases=""
for example in $examples; do
    "$new" example "$example" > "$work/$example.toml"
    for backend in $backends; do
        cases="$cases $example:$backend"
    done
    if grep -q 'cells = \[[0-9]*\]' "$work/$example.toml"; then
        # The same example with a checked surrogate: [solver] replaced (it is the last table).
        awk '/^\[solver\]/{exit} {print}' "$work/$example.toml" > "$work/$example-checked.toml"
        printf '[solver]\nkind = "flow"\ncheck_every = 2\ncheck_tol = 1e-3\n' >> "$work/$example-checked.toml"
        cases="$cases $example-checked:"
    fi
done
status=0
same=0
for case in $cases; do
    example="${case%%:*}"
    backend="${case#*:}"
    {
        run() { # binary, output dir
            "$1" run "$work/$example.toml" --out "$2" ${backend:+--solver "$backend"} \
                --steps "$steps" -q 2> "$2.err" && echo ok || echo failed
        }
        a="$(run "$base" "$work/base-$example-$backend")"
        b="$(run "$new" "$work/new-$example-$backend")"
        label="$example / ${backend:-flow checked by newton}"
        if [ "$a" != "$b" ]; then
            echo "$label: MISMATCH: baseline $a, new $b"
            status=1
            continue
        fi
        # Compare every density either run wrote (a failed run keeps its finished steps).
        base_files="$(cd "$work/base-$example-$backend" 2>/dev/null && ls rho_*.npy 2>/dev/null || true)"
        new_files="$(cd "$work/new-$example-$backend" 2>/dev/null && ls rho_*.npy 2>/dev/null || true)"
        differ=0
        earlier=""
        if [ "$base_files" != "$new_files" ]; then
            if [ "$a" = failed ] && [ -z "$new_files" ]; then
                # A mesh or term the backend does not treat is now refused when the run is
                # planned, before rho_00000.npy is written (the baseline failed at step 1).
                earlier=" (refused before the first step; the baseline wrote $(echo "$base_files" | grep -c .) file(s) first)"
                base_files=""
            else
                echo "$label: DIFFERENT steps written"
                differ=1
            fi
        fi
        for name in $base_files; do
            if ! cmp -s "$work/base-$example-$backend/$name" "$work/new-$example-$backend/$name"; then
                echo "$label: $name DIFFERS"
                differ=1
            fi
        done
        count="$(echo "$base_files" | grep -c . || true)"
        if [ "$differ" = 1 ]; then
            status=1
        elif [ "$a" = failed ]; then
            echo "$label: fails with both, $count densities before it bit-identical$earlier ($(head -c 120 "$work/new-$example-$backend.err" | head -n 1))"
        else
            echo "$label: $count densities bit-identical"
            same=$((same + 1))
        fi
    }
done
echo "bit-identical pairs: $same; result: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
