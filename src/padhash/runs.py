"""The `--out` run folder: checked, owned and locked once per command, before any work starts.

- A path that is a file, lies below a file, is too long or cannot be created or written is one PadhashError.
- A folder that holds files but no padhash run (no lock file, config.yaml or results.json) is the user's own:
  refused, so nothing they own is overwritten.
- `fcntl.flock` on RUN/.padhash.lock refuses a second command on the same folder while one runs. The lock is
  taken by the entry point (`@owns_run_folder`) in the main process only and is re-entrant there, so nested entry
  points and worker processes writing trial files into the folder never take it again.
- A run that fails before doing any work (the folder held nothing of it but what this call wrote: config,
  lock, an empty results file) removes those files again, so the corrected command can use the same folder.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import inspect
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from padhash.errors import PadhashError

LOCK_NAME = ".padhash.lock"
RUN_MARKERS = (LOCK_NAME, "config.yaml", "results.json")
_HELD: dict[Path, int] = {}  # resolved run folder -> nesting depth of this process's lock


def check_out_path(out: str | Path) -> tuple[Path, bool]:
    """Create folder `out` if needed (and say whether it was); one line naming it when it cannot be a writable
    run folder."""
    out = Path(out)
    try:
        created = not out.exists()
        for parent in [out, *out.parents]:
            if parent.exists() and not parent.is_dir():
                what = "is" if parent == out else f"lies below {parent}, which is"
                raise PadhashError(f"{out}: {what} a file, not a folder; choose another --out")
    except OSError as exc:  # e.g. a name too long to even look up
        raise PadhashError(f"{str(out)[:80]}...: not a usable run folder ({_reason(exc)})") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PadhashError(f"{str(out)[:200]}: cannot create the run folder ({_reason(exc)})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PadhashError(f"{out}: the run folder is not writable")
    return out, created


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "a name in the path is longer than the file system allows"
    return exc.strerror or exc.__class__.__name__


def _entries(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def check_ownership(out: Path) -> None:
    """Refuse a non-empty folder that is not a padhash run: its files are the user's."""
    names = _entries(out)
    nested = any((out / n).is_dir() and _entries(out / n) & set(RUN_MARKERS) for n in names)  # e.g. RUN/attack
    if names and not names & set(RUN_MARKERS) and not nested:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise PadhashError(f"{out}: holds files that are not a padhash run ({shown}); choose an empty or new --out")


@contextlib.contextmanager
def run_folder(out: str | Path) -> Iterator[Path]:
    """Checked, owned and locked run folder for the duration of one command (see the module docstring)."""
    out, created = check_out_path(out)
    key = out.resolve()
    if key in _HELD:  # a nested entry point of the same command
        _HELD[key] += 1
        try:
            yield out
        finally:
            _HELD[key] -= 1
        return
    check_ownership(out)
    before = _entries(out)
    try:
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PadhashError(f"{out}: cannot write the lock file ({_reason(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PadhashError(f"{out}: another padhash command is running in this folder; wait for it or choose "
                           "another --out") from None
    _HELD[key] = 1
    for stale in out.rglob(".*.tmp"):  # a killed write's temp file (io._atomic_replace); the lock makes it ours
        stale.unlink(missing_ok=True)
    try:
        yield out
    except BaseException:
        if not before - {LOCK_NAME}:
            _remove_if_no_work(out, created)
        raise
    finally:
        del _HELD[key]
        os.close(fd)  # closing releases the lock


def _remove_if_no_work(out: Path, created: bool) -> None:
    """Remove what a failed first call left when it is only bookkeeping, never work (checkpoints, trials)."""
    names = _entries(out)
    if not names <= set(RUN_MARKERS) or _has_trials(out / "results.json"):
        return
    for name in names:
        with contextlib.suppress(OSError):
            (out / name).unlink()
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _has_trials(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # unknown contents: keep them
    return not isinstance(data, dict) or bool(data.get("trials"))


def owns_run_folder(arg: str = "out_dir") -> Callable:
    """Decorator for an API entry point: its argument `arg` is the run folder, held by `run_folder` meanwhile."""
    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments[arg]
            with run_folder(out):
                return fn(*args, **kwargs)
        return inner
    return wrap


@contextlib.contextmanager
def artifact_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock beside `path` while this process makes it, so trials on other workers that need the
    same file (a trigger) wait for it instead of making it again. An economy only: the files are written atomically
    and deterministically, so where flock fails (some network file systems) two makers write the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
