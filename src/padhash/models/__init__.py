"""Hash models: Normalize → backbone (small CNN or torchvision, local weights only) → hash layer; ensembles."""
from padhash.models.backbones import BACKBONES, SmallCNN, read_weights
from padhash.models.hash_model import HashEnsemble, HashModel, Normalize, build_model

__all__ = ["BACKBONES", "HashEnsemble", "HashModel", "Normalize", "SmallCNN", "build_model", "read_weights"]
