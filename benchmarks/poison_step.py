"""Time of one poison-crafting step vs one surrogate training step on the same batch (goal: ratio ≤ 3.5×).

A crafting step = augment the poisons, G_p with create_graph, matching loss, backward to δ, signed-Adam step,
projection. It is measured through `craft_poisons` itself: (time of S2 steps − time of S1 steps) / (S2 − S1), so
the one-off set-up (G_v, diagnostics) cancels. A training step = forward, hashing loss, backward, optimizer step.

    python benchmarks/poison_step.py [--backbone smallcnn] [--batch 64] [--bits 32] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from padhash.attacks.poisoning import CraftConfig, craft_poisons
from padhash.hashing import make_loss
from padhash.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="smallcnn")
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--method", default="csq")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    classes = 10
    model = build_model(args.backbone, args.bits, image_size=args.image_size).to(device)
    loss = make_loss(args.method, classes, args.bits, seed=0)
    images = torch.rand(args.batch, 3, args.image_size, args.image_size, generator=g).to(device)
    labels = torch.nn.functional.one_hot(torch.full((args.batch,), 3), classes).float().to(device)
    trigger = torch.rand(1, 3, args.image_size, args.image_size, generator=g).to(device)
    target = labels[0]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def train_steps(n):
        for _ in range(n):
            optimizer.zero_grad()
            loss(model(images), labels).backward()
            optimizer.step()

    train_steps(3)  # warm-up
    sync()
    start = time.perf_counter()
    train_steps(args.repeats)
    sync()
    train_step = (time.perf_counter() - start) / args.repeats

    model.eval()

    def craft(steps):
        sync()
        t = time.perf_counter()
        craft_poisons([model], [loss], images, labels, trigger, target, CraftConfig(steps=steps),
                      generator=torch.Generator().manual_seed(1), progress=False)
        sync()
        return time.perf_counter() - t

    craft(2)  # warm-up
    s1, s2 = 2, 2 + args.repeats
    craft_step = (craft(s2) - craft(s1)) / (s2 - s1)
    result = {"backbone": args.backbone, "batch": args.batch, "bits": args.bits, "method": args.method,
              "threads": args.threads, "device": args.device, "train_step_s": round(train_step, 5),
              "craft_step_s": round(craft_step, 5), "ratio": round(craft_step / train_step, 2), "goal": 3.5}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
