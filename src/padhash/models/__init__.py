"""Hash models: upsample → normalize → backbone → hash layer, the backbone registry, fine-tuning regimes, cached
frozen features, ensembles; video hash models (frame backbone + LSTM or mean-pooling fusion)."""
from padhash.models import backbones, efficientnet  # noqa: F401  (register the built-in backbones)
from padhash.models.backbones import SmallCNN, read_weights
from padhash.models.features import FeatureCache
from padhash.models.hash_model import FINETUNE, HashEnsemble, HashModel, Normalize, build_model
from padhash.models.registry import BACKBONES, PACKAGED, Backbone, create_backbone, register_backbone
from padhash.models.video import FUSIONS, TemporalHead, VideoHashModel, build_video_model

__all__ = ["BACKBONES", "FINETUNE", "PACKAGED", "Backbone", "FeatureCache", "HashEnsemble", "HashModel",
           "Normalize", "SmallCNN", "FUSIONS", "TemporalHead", "VideoHashModel", "build_model", "build_video_model",
           "create_backbone", "read_weights", "register_backbone"]
