# Sourced by the setup scripts (not run): `venv DIR REQUIREMENTS` creates the virtual environment
# DIR at the repository root with $PYTHON (default python3) unless it exists, keeps it out of git
# (a `*` .gitignore inside it, so it needs no entry in the root .gitignore), and installs
# REQUIREMENTS with pip (quietly; pip skips what is installed). Run from the repository root.
venv() {
    local dir="$1" requirements="$2" python="${PYTHON:-python3}"
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir"
    fi
    [ -f "$dir/.gitignore" ] || echo '*' > "$dir/.gitignore"
    "$dir/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
}
