"""How much the noise-robust term's noise corrupts what a surrogate sees, by where it is drawn (docs/results.md).

    python docs/measurements/noise_corruption.py SURROGATE_CHECKPOINT [--data ../shared/data/cifar10_subset.npz]

For the first 256 test images: the mean Hamming distance (of 48 bits) between the surrogate's clean code and its
code under uniform noise of each level, drawn per query pixel ("image") or per pixel of the network input after
the model's upsampling ("model", where Xiao & Wang's reference draws it), 8 draws per image.
"""
import argparse
import sys

import numpy as np
import torch

from padhash.attacks.adversarial.transfer import model_input, sample_noise
from padhash.errors import PadhashError
from padhash.io import load_tensors
from padhash.models.hash_model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="../shared/data/cifar10_subset.npz")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--bits", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build_model(args.backbone, args.bits, weights="imagenet", finetune="frozen")
    try:
        state = {k[len("model."):]: v for k, v in load_tensors(args.checkpoint).items() if k.startswith("model.")}
        model.load_state_dict(state)
        with np.load(args.data) as arrays:  # allow_pickle stays False
            x = torch.from_numpy(arrays["x_test"][:256]).permute(0, 3, 1, 2).float() / 255
    except (PadhashError, OSError, KeyError, RuntimeError) as exc:
        print(f"noise_corruption: {exc}".splitlines()[0], file=sys.stderr)
        sys.exit(2)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        clean = torch.sign(model(x))
        print("level  | image-pixel noise | model-pixel noise  (mean bits flipped of", args.bits, ")")
        for level in (8 / 255, 16 / 255, 32 / 255):
            flips = {}
            for where in ("image", "model"):
                base = model_input(model, x) if where == "model" else x
                total = 0.0
                for _ in range(8):
                    noisy = (base + sample_noise(base.shape, level, "uniform", gen)).clamp(0, 1)
                    total += (torch.sign(model(noisy)) != clean).float().sum(1).mean().item() / 8
                flips[where] = total
            print(f"{level * 255:4.0f}/255 | {flips['image']:17.2f} | {flips['model']:17.2f}")


if __name__ == "__main__":
    main()
