"""Checks shared by configs and runners: numeric ranges with key paths, the image-size fit, warning lines."""
from __future__ import annotations

import dataclasses
import sys

import torch

from padhash.errors import PadhashError


def warn(message: str) -> None:
    """One warning line on stderr: the run goes on, but the user should know (e.g. a clipped top-K)."""
    print(f"padhash: warning: {message}", file=sys.stderr)


def check_range(where: str, value, lo=None, hi=None) -> None:
    """`value` within [lo, hi] (either bound optional); the message names the key path and the range."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"in {lo}..{hi}" if lo is not None and hi is not None else (f"≥ {lo}" if lo is not None else f"≤ {hi}")
        raise PadhashError(f"{where}: must be {bounds}, got {value!r}")


def check_model_fits(model: torch.nn.Module, split, device: torch.device, where: str = "data") -> None:
    """One forward pass on two training images before training: too small images (or a channel mismatch) fail
    here as one line instead of deep inside the first batch."""
    if len(split) == 0:
        return
    idx = torch.arange(min(2, len(split)))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(split.images(idx).to(device))
    except RuntimeError as exc:
        raise PadhashError(f"{where}: {split.image_size}x{split.image_size} images do not fit the network "
                           f"({str(exc).splitlines()[0][:160]}); use larger images (data.image_size)") from None
    finally:
        model.train(was_training)


def check_device(device: str, where: str) -> torch.device:
    """cpu, cuda or cuda:N, spelled right (configs for a GPU still parse on a CPU machine)."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise PadhashError(f"{where}: {device!r} is not a device (cpu, cuda, cuda:N)") from None


def available_device(device: str, where: str) -> torch.device:
    """The device, when this machine has it: checked where a run starts using it, before any work."""
    dev = check_device(device, where)
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise PadhashError(f"{where}: {device!r} requested but there is no such CUDA device")
    return dev


def check_recipe(cfg, where: str) -> None:
    """A TrainConfig that training could use (trainer.check_config), its device included, under key path `where`.
    A weights file is looked for when the model is built, so configs parse on a machine without it."""
    from padhash.hashing.trainer import check_config

    try:
        check_config(dataclasses.replace(cfg, weights=None))
    except PadhashError as exc:
        raise PadhashError(f"{where}: {exc}") from None
    check_device(cfg.device, f"{where}.device")
