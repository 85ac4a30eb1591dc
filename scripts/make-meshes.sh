#!/usr/bin/env bash
# Regenerate the Gmsh meshes of data/meshes/ (committed; the tests read them) with gmsh's Python
# package in .venv-mesh (PyPI `gmsh`, runs headless; ~10 s to install, ~5 s to mesh).
#
#   scripts/make-meshes.sh [OUT_DIR]     default OUT_DIR: data/meshes
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
venv .venv-mesh data/meshes/requirements.txt
exec .venv-mesh/bin/python data/meshes/make_meshes.py "$@"
