#!/usr/bin/env bash
# Generate a jko dataset with a Slurm job array: array task i of n runs shard i/n, i.e. the
# samples whose index is congruent to i modulo n, and writes into OUT_DIR
#   inputs_<i>-of-<n>.npy, trajectories_<i>-of-<n>.npy, energies_<i>-of-<n>.npy,
#   manifest_<i>-of-<n>.json            (<i>, <n> zero-padded to 5 digits)
# Every sample depends only on (seed, sample index), so the union over the shards is the same
# dataset for any number of tasks; a failed task can be resubmitted alone
# (sbatch --array=5 ... with the same array size: set JKO_SHARD_COUNT, see below).
#
# Usage (build the binary once, on a login node: cargo build --release -p jko-cli):
#   sbatch --array=0-15 scripts/slurm-dataset.sh data/dataset-example.toml out/dataset
#   JKO_SHARD_COUNT=16 sbatch --array=5 scripts/slurm-dataset.sh data/dataset-example.toml out/dataset
# Locally, without Slurm (shard 1 of 4):
#   SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=4 scripts/slurm-dataset.sh SPEC.toml OUT_DIR
#
# Environment:
#   JKO               the jko binary (default: target/release/jko beside this script, else `jko` on PATH)
#   JKO_SHARD_COUNT   number of shards (default: SLURM_ARRAY_TASK_COUNT); the array must be
#                     0-based and contiguous (--array=0-(n-1)), without a step (":k")
#   RAYON_NUM_THREADS threads per task (default: SLURM_CPUS_PER_TASK); samples run in parallel
#
#SBATCH --job-name=jko-dataset
#SBATCH --cpus-per-task=4
#SBATCH --mem-per-cpu=2G
#SBATCH --time=02:00:00
#SBATCH --output=jko-dataset-%A_%a.out
set -euo pipefail

usage="usage: sbatch --array=0-(n-1) $0 SPEC.toml OUT_DIR"
spec=${1:?$usage}
out=${2:?$usage}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z "${JKO:-}" ]]; then
    if [[ -x "$here/../target/release/jko" ]]; then
        JKO="$here/../target/release/jko"
    else
        JKO=jko
    fi
fi

task=${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=0-(n-1)}
count=${JKO_SHARD_COUNT:-${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT is not set; set JKO_SHARD_COUNT}}
if (( task < 0 || task >= count )); then
    echo "array task $task is outside 0..$((count - 1)): use --array=0-$((count - 1))" >&2
    exit 2
fi
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

echo "jko dataset: shard $task/$count of $spec into $out ($RAYON_NUM_THREADS threads) on $(hostname)"
start=$(date +%s)
"$JKO" dataset "$spec" --out "$out" --shard "$task/$count"
echo "shard $task/$count done in $(( $(date +%s) - start )) s"
