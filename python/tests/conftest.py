import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _candidates():
    env = os.environ.get("JKO_CLI")
    if env:
        yield pathlib.Path(env)
        return
    for target in filter(None, [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]):
        for profile in ("release", "debug"):
            yield pathlib.Path(target) / profile / "jko"
    found = shutil.which("jko")
    if found:
        yield pathlib.Path(found)


@pytest.fixture(scope="session")
def jko_cli():
    """The engine's CLI binary (JKO_CLI, or target/{release,debug}/jko).

    scripts/setup-python.sh test builds it and sets JKO_CLI; under CI a missing binary fails
    instead of skipping, so the agreement test cannot silently disappear.
    """
    for path in _candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return path
    message = "the jko CLI binary was not found: set JKO_CLI or run `cargo build -p jko-cli --bin jko`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
