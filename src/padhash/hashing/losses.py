"""The method registry: `make_loss(method, ...)` builds any method's loss with one call signature."""
from __future__ import annotations

from typing import Any

from padhash.errors import PadhashError
from padhash.hashing.base import HashLoss
from padhash.hashing.ciba import CIBALoss
from padhash.hashing.csq import CSQLoss
from padhash.hashing.dch import DCHLoss
from padhash.hashing.dpn import DPNLoss
from padhash.hashing.dpsh import DPSHLoss
from padhash.hashing.dvh import DVHLoss
from padhash.hashing.hashnet import HashNetLoss

LOSSES: dict[str, type[HashLoss]] = {
    "csq": CSQLoss, "dpn": DPNLoss, "hashnet": HashNetLoss, "dch": DCHLoss, "dpsh": DPSHLoss, "ciba": CIBALoss,
    "dvh": DVHLoss,  # DHTA's video hashing objective
}
METHODS: tuple[str, ...] = tuple(LOSSES)


def make_loss(method: str, num_classes: int, bits: int, *, seed: int = 0, num_train: int | None = None,
              **hparams: Any) -> HashLoss:
    """The loss of hashing `method`; `seed` fixes CSQ centres / DPN targets; `num_train` sizes DPSH's memory;
    `hparams` override the reference defaults (see each class's HPARAMS)."""
    if method not in LOSSES:
        raise PadhashError(f"unknown hashing method {method!r} (known: {', '.join(METHODS)})")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise PadhashError(f"bits must be a positive integer, got {bits!r}")
    return LOSSES[method](num_classes, bits, seed=seed, num_train=num_train, **hparams)
