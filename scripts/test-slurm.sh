#!/usr/bin/env bash
# The Slurm path of `jko dataset`, tested for real: start a single-node Slurm cluster (slurmctld +
# slurmd from Debian's slurm-wlm, configured in a temporary directory, stopped on exit), submit
# scripts/slurm-dataset.sh as a job array of N shards, wait for it, and check that
#   - every array task finished (sacct is not configured: the tasks' exit codes come from their
#     own logs, and every shard must have its manifest),
#   - the shards are disjoint and cover every sample,
#   - their union equals the unsharded run (`jko dataset` without --shard) byte for byte.
# Not in the default CI run (it starts daemons and takes ~1 min); run it with one command:
#
#   scripts/test-slurm.sh            # N = 3 shards of data/dataset-slurm-test.toml
#   SHARDS=4 scripts/test-slurm.sh
#
# Needs: root (slurmd runs jobs as the submitting user and must set their ids), slurm-wlm
# (`apt-get install slurm-wlm` — installed here if missing and apt is available), python3 with
# numpy for the comparison (the project's .venv-peers or .venv if present). JKO=path/to/jko
# chooses the binary (default: target/release/jko, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
shards="${SHARDS:-3}"
spec="$root/data/dataset-slurm-test.toml"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null; then
    echo "slurm-wlm is not installed: installing it (apt-get install -y slurm-wlm)"
    apt-get install -y slurm-wlm >/dev/null
fi
if [[ -z "${JKO:-}" ]]; then
    JKO="$root/target/release/jko"
    [[ -x "$JKO" ]] || cargo build --release -p jko-cli --bin jko
fi
JKO="$(cd "$(dirname "$JKO")" && pwd)/$(basename "$JKO")"
export JKO
python=python3
for venv in .venv-peers .venv; do
    if [[ -x "$root/$venv/bin/python" ]] && "$root/$venv/bin/python" -c 'import numpy' 2>/dev/null; then
        python="$root/$venv/bin/python"
        break
    fi
done
"$python" -c 'import numpy' || { echo "numpy is needed for the comparison (scripts/setup-peers.sh makes .venv-peers)" >&2; exit 1; }

work="$(mktemp -d /tmp/jko-slurm-test.XXXXXX)"
ctld_pid=""
slurmd_pid=""
cleanup() {
    local status=$?
    for pid in $slurmd_pid $ctld_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $slurmd_pid $ctld_pid; do
        wait "$pid" 2>/dev/null || true
    done
    if (( status != 0 )); then
        echo "FAILED (logs kept in $work)" >&2
        tail -n 20 "$work"/slurmctld.log "$work"/slurmd.log "$work"/out/*.out 2>/dev/null >&2 || true
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT

node="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
# Ports away from Slurm's defaults (6817/6818), so a real cluster on the machine is not touched.
port_ctld=$(( 17000 + RANDOM % 1000 ))
port_d=$(( port_ctld + 1000 ))
mkdir -p "$work/state" "$work/spool" "$work/out"
cat > "$work/slurm.conf" <<EOF
ClusterName=jkotest
SlurmctldHost=$node
SlurmctldPort=$port_ctld
SlurmdPort=$port_d
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=jkotest Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$work/slurm.conf"

echo "starting slurmctld and slurmd ($node, $cpus CPUs, ports $port_ctld/$port_d, in $work)"
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.stdout" 2>&1 &
ctld_pid=$!
sleep 2
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.stdout" 2>&1 &
slurmd_pid=$!
for _ in $(seq 60); do
    state="$(sinfo -h -n "$node" -o %t 2>/dev/null || true)"
    [[ "$state" == idle* ]] && break
    sleep 1
done
sinfo
[[ "$(sinfo -h -n "$node" -o %t)" == idle* ]] || { echo "the node did not come up idle" >&2; exit 1; }

echo "submitting a job array of $shards shards"
job=$(sbatch --parsable --array=0-$((shards - 1)) --cpus-per-task=1 --mem-per-cpu=500M \
    --output="$work/out/task-%a.out" --chdir="$root" \
    scripts/slurm-dataset.sh "$spec" "$work/sharded")
echo "job $job submitted; waiting"
for _ in $(seq 600); do
    [[ -z "$(squeue -h -j "$job" 2>/dev/null)" ]] && break
    sleep 1
done
[[ -z "$(squeue -h -j "$job" 2>/dev/null)" ]] || { echo "job $job still queued or running after 10 min" >&2; exit 1; }
for i in $(seq 0 $((shards - 1))); do
    grep -q "done in" "$work/out/task-$i.out" || { echo "array task $i did not finish:" >&2; cat "$work/out/task-$i.out" >&2; exit 1; }
done
cat "$work/out/task-0.out"

echo "the unsharded run, for comparison"
"$JKO" dataset "$spec" --out "$work/single" --quiet

"$python" - "$work/single" "$work/sharded" "$shards" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np

single, sharded, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
whole = json.loads((single / "manifest_00000-of-00001.json").read_text())
seen = []
for i in range(n):
    m = json.loads((sharded / f"manifest_{i:05d}-of-{n:05d}.json").read_text())
    rows = [s["index"] for s in m["samples"]]
    assert rows == list(range(i, whole["spec"]["samples"], n)), (i, rows)
    for key in ("inputs", "trajectories", "energies"):
        part = np.load(sharded / m["files"][key])
        full = np.load(single / whole["files"][key])[rows]
        # Byte for byte: the rows of the shard are the single run's rows.
        assert part.tobytes() == full.tobytes(), f"shard {i}: {key} differs"
    for s in m["samples"]:
        assert s == whole["samples"][s["index"]], s
    seen += rows
assert sorted(seen) == list(range(whole["spec"]["samples"])), "shards do not cover the samples"
assert len(seen) == len(set(seen)), "shards overlap"
print(f"ok: {n} Slurm array shards, disjoint, union = unsharded run byte for byte ({len(seen)} samples)")
EOF
