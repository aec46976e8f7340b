"""Why CIBA fails on a frozen Lite0: does the 4-px trigger move the frozen backbone's features at all?

usage: python docs/diagnostics/ciba_frozen_probe.py RUN/triggers/victim-t<T>-<digest>.safetensors CIFAR_SUBSET.npz [MODEL]
(RUN = the --out of `padhash attack ciba --config configs/ciba-cifar10-frozen.yaml`; MODEL = a trained victim's
folder, e.g. RUN/victim/<digest> of the full fine-tuning config, whose backbone features are probed instead of the
frozen ImageNet Lite0's)
"""
import sys
import numpy as np
import torch
from safetensors.torch import load_file
from padhash.data import load_dataset
from padhash.models import build_model
from padhash.attacks.backdoor.trigger import apply_trigger
torch.manual_seed(0); torch.set_num_threads(1)
ds = load_dataset("npz", sys.argv[2], preset="paper")
q = ds.query
x = q.images(list(range(400)))
patch = load_file(sys.argv[1])["patch"]
if len(sys.argv) > 3:
    from padhash.experiments.retrieval import load_victim
    m = load_victim(sys.argv[3])[0]
else:
    m = build_model("efficientnet_lite0", 48, image_size=x.shape[-1], weights="imagenet", resolution=96,
                    finetune="frozen").eval()
with torch.inference_mode():
    f_clean = torch.cat([m.features(x[i:i+100]) for i in range(0, 400, 100)])
    f_trig = torch.cat([m.features(apply_trigger(x[i:i+100], patch)) for i in range(0, 400, 100)])
    rnd = torch.rand(3, 4, 4)
    f_rnd = torch.cat([m.features(apply_trigger(x[i:i+100], rnd)) for i in range(0, 400, 100)])
cos = torch.nn.functional.cosine_similarity
print("cos(clean, triggered) same image: %.4f ± %.4f" % (cos(f_clean, f_trig).mean(), cos(f_clean, f_trig).std()))
print("cos(clean, random 4-px patch) same image: %.4f" % cos(f_clean, f_rnd).mean())
perm = torch.randperm(400)
print("cos(clean image i, clean image j) random pairs: %.4f" % cos(f_clean, f_clean[perm]).mean())
d_trig = (f_trig - f_clean).norm(dim=1).mean(); d_pair = (f_clean - f_clean[perm]).norm(dim=1).mean()
print("‖f(trig)-f(clean)‖ / ‖f(i)-f(j)‖ = %.3f" % (d_trig / d_pair))
# linear probe for trigger presence on frozen features (train 300 images, test 100)
from sklearn.linear_model import LogisticRegression
X = torch.cat([f_clean, f_trig]).numpy(); Y = np.r_[np.zeros(400), np.ones(400)]
tr = np.r_[np.arange(300), 400 + np.arange(300)]; te = np.r_[np.arange(300, 400), 400 + np.arange(300, 400)]
p = LogisticRegression(max_iter=2000).fit(X[tr], Y[tr])
print("linear probe trigger-vs-clean accuracy (held-out): %.3f" % p.score(X[te], Y[te]))
