"""Shared fixtures: the shared folder (models, references), the lowbit CLI, and skips for C
functions that this build of liblowbit does not have yet (modules merged later)."""
import os
import shutil
import sys

import pytest

# the package of this checkout (not an installed one)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lowbit  # noqa: E402
from lowbit import _lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shared_dir():
    d = os.environ.get("LOWBIT_SHARED") or os.path.join(REPO, "..", "shared")
    return os.path.abspath(d)


def S(*parts):
    return os.path.join(shared_dir(), *parts)


@pytest.fixture(scope="session")
def shared():
    if not os.path.isdir(S("models")):
        pytest.fail("shared folder %s has no models/ (set LOWBIT_SHARED)" % shared_dir())
    return S


@pytest.fixture(scope="session")
def cli():
    """The lowbit CLI next to the loaded library (or LOWBIT_BINARY)."""
    path = os.environ.get("LOWBIT_BINARY") or os.path.join(os.path.dirname(lowbit.library_path()), "lowbit")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        path = shutil.which("lowbit") or path
    if not os.access(path, os.X_OK):
        pytest.fail("no lowbit CLI at %s (set LOWBIT_BINARY)" % path)
    return path


def need(*symbols):
    """Skips the calling test when liblowbit lacks a C function (its module is not merged yet)."""
    missing = [s for s in symbols if not _lib.has(s)]
    if missing:
        pytest.skip("liblowbit (%s) has no %s yet" % (lowbit.library_path(), ", ".join(missing)))


STORIES_GGUF = ("models", "stories260K-gguf", "stories260K.gguf")
TOK512_MODEL = ("models", "stories260K-llama2c", "tok512.model")
