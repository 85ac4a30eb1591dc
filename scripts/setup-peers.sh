#!/usr/bin/env bash
# Create (or refresh) .venv-peers: the Python environment of the peer programs under benches/peers/
# (a CVXPY + Clarabel program of the one-step scheme, numpy and POT Sinkhorn, ...), which the
# comparison benches run beside our backends on the same discrete problem.
#
#   scripts/setup-peers.sh                 create/refresh .venv-peers from benches/peers/requirements.txt
#   scripts/setup-peers.sh SCRIPT [ARGS]   the same, then run benches/peers/SCRIPT with it
#
# Needs only python3 with venv and pip (PyPI reachable). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
venv .venv-peers benches/peers/requirements.txt
if [ $# -gt 0 ]; then
    script="$1"
    shift
    exec .venv-peers/bin/python "benches/peers/$script" "$@"
fi
