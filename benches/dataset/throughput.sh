#!/usr/bin/env bash
# Dataset throughput: trajectories per core-hour per backend at 1D (64 cells), 64² and 128²,
# and the scaling from 1 to 2 worker threads (`jko dataset --threads`), with CPU time against
# wall time (CPU ≈ threads × wall when the samples really run in parallel).
#
#   benches/dataset/throughput.sh            # all rows (~10 min on 2 idle cores)
#   ROWS="1d-newton 64-newton" benches/dataset/throughput.sh
#
# Every row runs the same spec (benches/dataset/base.toml's families, 10 steps of τ = 0.05 of
# Fokker–Planck with a quadratic potential) on 1 and then 2 threads. The machine's load is
# printed: on a shared machine the wall times, not the CPU/wall ratio, suffer.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
JKO="${JKO:-$root/target/release/jko}"
[[ -x "$JKO" ]] || cargo build --release -p jko-cli --bin jko
work="$(mktemp -d /tmp/jko-throughput.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# name  cells  lower  upper  backend  samples
all_rows=(
    "1d-newton   [64]        [-5.0]        [5.0]        newton   200"
    "1d-quantile [64]        [-5.0]        [5.0]        quantile 200"
    "1d-conic    [64]        [-5.0]        [5.0]        conic    40"
    "64-newton   [64,64]     [-5.0,-5.0]   [5.0,5.0]    newton   24"
    "64-conic    [64,64]     [-5.0,-5.0]   [5.0,5.0]    conic    2"
    "128-newton  [128,128]   [-5.0,-5.0]   [5.0,5.0]    newton   8"
)
rows="${ROWS:-}"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf '| grid | backend | samples | threads | wall s | CPU s | CPU/wall | traj per core-hour | traj per hour | speed-up 1→2 |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for row in "${all_rows[@]}"; do
    read -r name cells lower upper backend samples <<<"$row"
    [[ -z "$rows" || " $rows " == *" $name "* ]] || continue
    spec="$work/$name.toml"
    sed -e "s/@CELLS@/$cells/" -e "s/@LOWER@/$lower/" -e "s/@UPPER@/$upper/" \
        -e "s/@BACKEND@/$backend/" -e "s/@SAMPLES@/$samples/" benches/dataset/base.toml > "$spec"
    wall1=""
    for threads in 1 2; do
        out="$work/$name-$threads"
        /usr/bin/time -f "%e %U %S" -o "$work/time" \
            "$JKO" dataset "$spec" --out "$out" --threads "$threads" --quiet
        read -r wall user sys <"$work/time"
        failed=$(grep -o '"failed": [0-9]*' "$out"/manifest_*.json | awk '{print $2}')
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')
        per_core_hour=$(awk -v n="$samples" -v c="$cpu" 'BEGIN {printf "%.0f", n / c * 3600}')
        per_hour=$(awk -v n="$samples" -v w="$wall" 'BEGIN {printf "%.0f", n / w * 3600}')
        ratio=$(awk -v c="$cpu" -v w="$wall" 'BEGIN {printf "%.2f", c / w}')
        speedup="-"
        if [[ $threads == 2 ]]; then
            speedup=$(awk -v a="$wall1" -v b="$wall" 'BEGIN {printf "%.2f", a / b}')
            cmp -s "$work/$name-1/trajectories_00000-of-00001.npy" "$out/trajectories_00000-of-00001.npy" \
                || { echo "$name: 1 and 2 threads gave different bytes" >&2; exit 1; }
        else
            wall1=$wall
        fi
        printf '| %s | %s | %s (%s failed) | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$cells" "$backend" "$samples" "$failed" "$threads" "$wall" "$cpu" "$ratio" "$per_core_hour" "$per_hour" "$speedup"
    done
done
