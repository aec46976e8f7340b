"""A minimal stand-in for padhash.data/models/hashing/retrieval/metrics (the docs/api.md signatures), so the pipeline
tests run in seconds and do not break while the foundation modules are in flux. Installed via monkeypatch only."""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch

from padhash.io import load_tensors, save_tensors
from tests.poisoning.helpers import CentreLoss, TinyHashNet

SIZE = 8


class TensorSplit:
    def __init__(self, images, labels):
        self._images, self.labels = images, labels
        self.image_size = images.shape[-1]

    def __len__(self):
        return len(self.labels)

    def images(self, idx=None):
        return self._images if idx is None else self._images[torch.as_tensor(idx, dtype=torch.long)]

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TensorSplit(self._images[idx], self.labels[idx])

    def replace(self, idx, images):
        out = self._images.clone()
        out[torch.as_tensor(idx, dtype=torch.long)] = images
        return TensorSplit(out, self.labels)


@dataclass
class DataConfig:
    name: str = "blobs"
    root: str | None = None
    preset: str | None = None
    seed: int = 0
    image_size: int | None = None


@dataclass
class RetrievalDataset:
    name: str
    class_names: list
    train: TensorSplit
    query: TensorSplit
    database: TensorSplit

    @property
    def num_classes(self):
        return len(self.class_names)


def _make(n_per_class, g, classes=3):
    protos = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])[:classes]
    ys = torch.arange(classes).repeat_interleave(n_per_class)
    x = protos[ys][:, :, None, None] * 0.6 + 0.4 * torch.rand(len(ys), 3, SIZE, SIZE, generator=g)
    return x.clamp(0, 1), torch.nn.functional.one_hot(ys, classes).float()


def load_dataset_from(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    train = TensorSplit(*_make(30, g))
    query = TensorSplit(*_make(6, g))
    return RetrievalDataset("blobs", ["r", "g", "b"], train, query, train)


def stolen_subset(split, fraction, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(split.labels.shape[1]):
        idx = torch.nonzero(split.labels[:, c] > 0).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[: max(1, round(fraction * len(idx)))]])
    return torch.sort(torch.cat(out)).values


def build_model(backbone, bits, *, image_size=32, weights=None):
    return TinyHashNet(bits, image_size)


@dataclass
class TrainConfig:
    method: str = "csq"
    bits: int = 8
    backbone: str = "tiny"
    epochs: int = 20
    batch_size: int = 16
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    augment: bool = False
    hflip: bool | None = None
    seed: int = 0
    device: str = "cpu"
    weights: str | None = None
    hparams: dict = field(default_factory=dict)


def make_loss(method, num_classes, bits, *, seed=0, num_train=None, **hparams):
    return CentreLoss(num_classes, bits, seed=0)  # the same centres on both sides, like CSQ's Hadamard centres


CALLS = {"epochs_trained": 0}


def train_hash_model(train, num_classes, cfg, *, model=None, loss=None, checkpoint_dir=None, progress=True):
    torch.manual_seed(cfg.seed)
    model = model or build_model(cfg.backbone, cfg.bits, image_size=train.image_size)
    loss = loss or make_loss(cfg.method, num_classes, cfg.bits)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr or 1e-2)
    start = 0
    ckpt = Path(checkpoint_dir) / "last.safetensors" if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = load_tensors(ckpt)
        start = int(state.pop("__epoch").item())
        model.load_state_dict(state)
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(train), generator=g)
        if epoch < start:
            continue
        model.train()
        for i in range(0, len(train), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss(model(train.images(idx)), train.labels[idx]).backward()
            opt.step()
        CALLS["epochs_trained"] += 1
        if ckpt is not None:
            save_tensors(ckpt, {**model.state_dict(), "__epoch": torch.tensor(epoch + 1)})
    return model.eval()


@torch.no_grad()
def encode(model, images_or_split, *, batch_size=256, device="cpu"):
    x = images_or_split.images() if hasattr(images_or_split, "images") else images_or_split
    u = model.eval()(x)
    return torch.where(u >= 0, 1, -1).to(torch.int8)


def hamming_topk(q, db, k, backend="auto"):
    d = ((q.shape[1] - q.float() @ db.float().T) / 2).round().long()
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return torch.gather(d, 1, order).int(), order


def asr_at_k(ranked_idx, db_labels, target_labels, *, threshold=0.3):
    t = target_labels.reshape(1, -1) > 0
    hits = (db_labels[ranked_idx] > 0)[..., t[0]].any(-1).float()
    fractions = hits.mean(1)
    return float((fractions >= threshold).float().mean()), fractions


def map_at_k(qc, dbc, ql, dbl, k=None, *, drop_empty=False):
    _, idx = hamming_topk(qc, dbc, k or len(dbc))
    rel = ((ql[:, None, :] * dbl[idx]).sum(-1) > 0).float()
    prec = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    ap = (prec * rel).sum(1) / rel.sum(1).clamp_min(1)
    return float(ap.mean())


def psnr(x, y):
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def ssim(x, y):
    return 1 - ((x - y) ** 2).flatten(1).mean(1)


def install(monkeypatch):
    """Put the stand-ins in sys.modules under the foundation's names for the duration of one test."""
    names = {
        "padhash.data": dict(DataConfig=DataConfig, load_dataset_from=load_dataset_from, stolen_subset=stolen_subset),
        "padhash.models": dict(build_model=build_model),
        "padhash.hashing": dict(TrainConfig=TrainConfig, make_loss=make_loss, train_hash_model=train_hash_model,
                                encode=encode),
        "padhash.retrieval": dict(hamming_topk=hamming_topk),
        "padhash.metrics": dict(asr_at_k=asr_at_k, map_at_k=map_at_k, psnr=psnr, ssim=ssim),
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    CALLS["epochs_trained"] = 0
