"""Hashing methods (CSQ, DPN, HashNet, DCH, DPSH) behind one loss signature, and the trainer."""
from padhash.hashing.base import HashLoss
from padhash.hashing.losses import LOSSES, METHODS, make_loss
from padhash.hashing.trainer import TrainConfig, encode, resolve_recipe, train_hash_model

__all__ = ["HashLoss", "LOSSES", "METHODS", "TrainConfig", "encode", "make_loss", "resolve_recipe",
           "train_hash_model"]
