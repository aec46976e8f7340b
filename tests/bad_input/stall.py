"""Run `padhash ARGS` with one function made to stall at a chosen call, so a test can SIGKILL it at a known point.

    python -m tests.bad_input.stall MODULE:NAME REGEX NTH before|after MARKER -- ARGS...

The NTH call of MODULE.NAME whose str/path arguments match REGEX runs as usual (`after`: the real call first; `before`:
not yet), then touches MARKER and sleeps until killed. Every other call is untouched, so the state on disk at the
kill is exactly what the real run had written by then.
"""
import importlib
import os
import re
import sys
import time
from pathlib import Path


def stall_at(target: str, pattern: str, nth: int, when: str, marker: str) -> None:
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    real, seen = getattr(module, name), [0]

    def stall():
        Path(marker).touch()
        time.sleep(3600)  # the test kills us here
        raise SystemExit("stall: never killed")

    def wrapper(*args, **kwargs):
        words = " ".join(str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike)))
        hit = re.search(pattern, words) is not None
        if hit:
            seen[0] += 1
        if hit and seen[0] == nth and when == "before":
            stall()
        result = real(*args, **kwargs)
        if hit and seen[0] == nth and when == "after":
            stall()
        return result

    setattr(module, name, wrapper)


def main(argv: list[str]) -> int:
    split = argv.index("--")
    target, pattern, nth, when, marker = argv[:split]
    stall_at(target, pattern, int(nth), when, marker)
    from padhash.cli import main as padhash

    return padhash(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
