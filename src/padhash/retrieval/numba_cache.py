"""A numba cache folder this user can write: numba raises "cannot cache function" when neither the install folder
nor its user cache folder is writable (a read-only install and HOME). Then a fresh temporary folder is used: the
kernels compile once per process instead of failing."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _numba_default_folders() -> list[Path]:
    """Where numba caches without NUMBA_CACHE_DIR: beside the source, else the user cache folder."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [Path(__file__).parent / "__pycache__", Path(xdg) / "numba"]


def ensure_writable_cache() -> None:
    """Point NUMBA_CACHE_DIR at a temporary folder when numba's own choice cannot be written; call before the
    kernels compile."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and _writable(Path(given)) or not given and any(map(_writable, _numba_default_folders())):
        return
    folder = tempfile.mkdtemp(prefix="padhash-numba-")
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # numba read its config at import: set it there too
        sys.modules["numba"].config.CACHE_DIR = folder
