"""Retrieval data sets: train / query / database splits of [0,1] NCHW images with multi-hot labels.

Loaders (see DATASETS): embedded scikit-learn digits, CIFAR-10 python batches (restricted unpickler), .npz arrays,
DeepHash-style image lists and image folders; clips of frames (`clips`: clip folders, clip .npz, the
embedded `digits-motion` set) and the embedded multi-label `digits-mosaic` set. `stolen_subset` samples the attacker's share of a split.
"""
from padhash.data.dataset import DATASETS, DataConfig, RetrievalDataset, load_dataset, load_dataset_from
from padhash.data.sampling import stolen_subset
from padhash.data.splits import FileSplit, Split, TensorSplit
from padhash.data import digits, cifar, arrays, files, clips, motion, mosaic  # noqa: F401  (register their loaders,
#                                                                              in DATASETS order)
from padhash.data.arrays import shared_cifar10_subset

__all__ = ["DATASETS", "DataConfig", "FileSplit", "RetrievalDataset", "Split", "TensorSplit", "load_dataset",
           "load_dataset_from", "shared_cifar10_subset", "stolen_subset"]
