"""Atomic writes and safe weight files: a killed run never leaves a half-written file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from padhash.errors import PadhashError


def _atomic_replace(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # disk full, quota, permissions: the old file is kept as it was
        raise PadhashError(f"{path}: could not be written ({getattr(exc, 'strerror', None) or exc}); "
                           "the previous version is kept") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    _atomic_replace(Path(path), write)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_npz(path: Path, arrays: dict[str, "np.ndarray"]) -> None:
    """Write a compressed .npz atomically (plain arrays only: read back with allow_pickle=False)."""
    def write(tmp):
        with open(tmp, "wb") as fh:  # a file handle keeps numpy from appending ".npz" to the temp name
            np.savez_compressed(fh, **arrays)
    _atomic_replace(Path(path), write)


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PadhashError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PadhashError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise PadhashError(f"{path}: not a text file (expected UTF-8 JSON)") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (contiguous CPU copies, as safetensors requires)."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp):
        save_file(clean, tmp, metadata=metadata)
        _canonical_header(tmp)
    _atomic_replace(Path(path), write)


def _canonical_header(path: str) -> None:
    """Rewrite the JSON header with sorted keys: safetensors writes the metadata in hash-map order, so two
    identical runs would differ in those bytes. Same keys and values, so the same length (padding kept)."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) <= size:
            fh.seek(8)
            fh.write(text.ljust(size, b" "))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (never unpickles); one-line error when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise PadhashError(f"{path}: no such file")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise PadhashError(f"{path}: not a readable safetensors file ({exc})") from None
