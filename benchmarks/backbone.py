"""Speed of the pretrained regime on this CPU: EfficientNet-Lite at a model resolution, one batch of 32-px images.

Everything is a ratio to a plain forward pass (eval, `torch.no_grad`, float32, contiguous) of the same batch,
measured in the same run (best of `--repeats`):
- feature extraction as the cache could run it: `inference_mode`, channels_last, bfloat16 autocast (with the share
  of 32-bit codes it leaves unchanged, through a random hash layer);
- one training step of each regime: frozen (the hash layer on cached features), partial (the last 2 stages), full;
- one gradient-matching crafting step through the frozen backbone (`craft_poisons`, (S2 − S1 steps) / (S2 − S1));
the steps in both memory layouts (EfficientNet-Lite models compute channels-last by default: it measured faster).

    python benchmarks/backbone.py [--backbone efficientnet_lite0] [--resolution 96] [--batch 64] [--threads 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from padhash.attacks.poisoning import CraftConfig, craft_poisons
from padhash.hashing import make_loss
from padhash.models import build_model
from padhash.retrieval import to_codes


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def set_layout(model, layout: str):
    """The model computing in `layout` (its weights converted, its inputs made channels-last inside features())."""
    model.channels_last = layout == "channels_last"
    model.backbone.to(memory_format=torch.channels_last if model.channels_last else torch.contiguous_format)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if min(args.resolution, args.batch, args.bits, args.threads, args.repeats) < 1:
        ap.error("every size must be at least 1")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g)
    labels = torch.nn.functional.one_hot(torch.arange(args.batch) % 10, 10).float()
    model = build_model(args.backbone, args.bits, weights="imagenet", resolution=args.resolution,
                        finetune="frozen").eval()
    set_layout(model, "contiguous")  # the baseline: a plain float32 forward pass

    def forward(mode=torch.no_grad, autocast=False, channels_last=False):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with mode(), ctx:
            z = model.normalize(model.upsample(x))
            if channels_last:
                z = z.contiguous(memory_format=torch.channels_last)
            return model.backbone(z).float()

    base = best_time(forward, args.repeats)
    out = {"backbone": args.backbone, "resolution": args.resolution, "batch": args.batch, "threads": args.threads,
           "forward_s": round(base, 4), "forward_img_per_s": round(args.batch / base, 1)}
    with torch.no_grad():
        reference = to_codes(model.hash_layer(forward()))
    variants = {"inference_mode": dict(mode=torch.inference_mode),
                "channels_last": dict(mode=torch.inference_mode, channels_last=True),
                "bf16_autocast": dict(mode=torch.inference_mode, autocast=True)}
    for name, kw in variants.items():
        set_layout(model, "channels_last" if kw.get("channels_last") else "contiguous")
        seconds = best_time(lambda: forward(**kw), args.repeats)
        with torch.no_grad():
            codes = to_codes(model.hash_layer(forward(**kw).clone()))
        out[name] = {"ratio": round(seconds / base, 3), "img_per_s": round(args.batch / seconds, 1),
                     "code_bits_kept": round(float((codes == reference).float().mean()), 4)}
    set_layout(model, "contiguous")

    loss = make_loss("csq", 10, args.bits, seed=0)
    features = forward()
    for layout in ("contiguous", "channels_last"):
        for regime in ("frozen", "partial", "full"):
            m = set_layout(build_model(args.backbone, args.bits, weights="imagenet", resolution=args.resolution,
                                       finetune=regime), layout).train()
            opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-4)

            def step():
                opt.zero_grad(set_to_none=True)
                u = m.hash_layer(features) if regime == "frozen" else m(x)
                loss(u, labels).backward()
                opt.step()
            out[f"train_step_{regime}_{layout}"] = {"ratio": round(best_time(step, args.repeats) / base, 3)}

        set_layout(model, layout)

        def craft(steps):
            start = time.perf_counter()
            craft_poisons([model], [loss], x, labels, x[:1], labels[1], CraftConfig(steps=steps),
                          generator=torch.Generator().manual_seed(1), progress=False)
            return time.perf_counter() - start

        craft(1)
        s1, s2 = 1, 1 + args.repeats
        out[f"craft_step_{layout}"] = {"ratio": round((craft(s2) - craft(s1)) / (s2 - s1) / base, 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
