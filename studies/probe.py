"""Stand-alone probe of the poisoning regime (docs/poisoning-study.md, rows p*), written while padhash.data/models/
hashing were not yet in the tree. It uses the pipeline's own `craft_poisons` but its own minimal CIFAR split, small CNN
(conv 32-64-128 + 256 MLP, BN), CSQ/DPN losses, training loop, ASR@40 and mAP, so a regime can be screened in a few
minutes on a GPU (dev=cuda) before a config for the real pipeline is written. Numbers from it are labelled "probe".

Split: x_train of the shared CIFAR-10 subset halved at random (seed 0): a "public" half (2,330) that only pretrains the
shared model, and the victim's half (2,330) = its training set = the database; queries/triggers from x_test. The same
5 (trigger, target) pairs in every setting (seed 5). The victim fine-tunes the public model (or trains from scratch,
scratch=1); the surrogate does the same on a stratified 10 % of the victim's half (white=1: the clean victim itself).

usage: python studies/probe.py [key=value ...]   keys: dev method(csq|dpn) pairs npois steps restarts alpha m(wb,pad)
       scratch white pre_epochs ft_epochs ft_lr params bn_mode public_frac data cache skipflip
"""
import sys, time, json, math
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from scipy.linalg import hadamard
sys.path.insert(0, "src"); sys.path.insert(0, "/work/main/src")
from padhash.attacks.poisoning import CraftConfig, craft_poisons
torch.set_num_threads(1)
A = dict(a.split("=") for a in sys.argv[1:])
def g(k, d): return type(d)(A.get(k, d))
DEV=g("dev","cpu")
BITS=32; EPS=16/255
import os; d = np.load(g("data","/work/shared/data/cifar10_subset.npz"))
X = torch.tensor(d["x_train"]).permute(0,3,1,2).float()/255; Y = torch.tensor(d["y_train"])
XQ = torch.tensor(d["x_test"]).permute(0,3,1,2).float()/255; YQ = torch.tensor(d["y_test"])
rng = np.random.default_rng(0)
perm = rng.permutation(len(X)); pub, vic = perm[:len(X)//2], perm[len(X)//2:]
if g("public_frac",0.5)==0: pub=perm[:0]; vic=perm
XV, YV = X[vic].to(DEV), Y[vic].to(DEV); XP, YP = X[pub].to(DEV), Y[pub].to(DEV); XQ, YQ = XQ.to(DEV), YQ.to(DEV)
centres = torch.tensor(np.concatenate([hadamard(BITS), -hadamard(BITS)])[:10]).float().to(DEV)
def oh(y): return F.one_hot(y,10).float()
def csq(u, lab, index=None):
    u = torch.tanh(u); c = centres[lab.argmax(1)]
    return F.binary_cross_entropy(0.5*(u+1), 0.5*(c+1)) + 1e-4*((u.abs()-1)**2).mean()
def dpn(u, lab, index=None):
    return (1 - u*centres[lab.argmax(1)]).clamp(min=0).mean()
LOSS = {"csq": csq, "dpn": dpn}[g("method","csq")]
class Net(nn.Module):
    def __init__(s):
        super().__init__()
        def blk(i,o): return nn.Sequential(nn.Conv2d(i,o,3,padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
        s.f = nn.Sequential(blk(3,32), blk(32,64), blk(64,128), nn.Flatten(), nn.Linear(128*16,256), nn.ReLU())
        s.hash_layer = nn.Linear(256, BITS)
        s.register_buffer("m", torch.tensor([0.49,0.48,0.45]).view(1,3,1,1)); s.register_buffer("sd", torch.tensor([0.25,0.24,0.26]).view(1,3,1,1))
    def forward(s,x): return s.hash_layer(s.f((x-s.m)/s.sd))
def aug(x, gen):
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1,1,1,1).to(x.device), x.flip(3), x)
    p = F.pad(x, (4,4,4,4), mode="reflect"); i,j = torch.randint(0,9,(2,), generator=gen).tolist()
    return p[:,:,i:i+32,j:j+32]
def train(x, y, epochs, lr, seed, init=None):
    torch.manual_seed(seed); m = Net().to(DEV)
    if init is not None: m.load_state_dict(init)
    opt = torch.optim.Adam(m.parameters(), lr=lr, weight_decay=1e-5); gen = torch.Generator().manual_seed(seed)
    for e in range(epochs):
        m.train(); idx = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), 64):
            bi = idx[b:b+64].to(DEV); loss = LOSS(m(aug(x[bi], gen)), oh(y[bi])); opt.zero_grad(); loss.backward(); opt.step()
    return m.eval()
@torch.no_grad()
def codes(m, x):
    u = torch.cat([m(x[i:i+512]) for i in range(0,len(x),512)]); return torch.where(u>=0, 1.0, -1.0)
def topk_frac(m, db, dby, q, t, k=40):
    cq, cd = codes(m, q), codes(m, db); dist = (BITS - cq@cd.T)/2
    idx = torch.argsort(dist + torch.arange(len(db),device=DEV)*1e-6, dim=1)[:, :k]
    return (dby[idx]==t).float().mean(1)
def mapall(m, db, dby, q, qy):
    cq, cd = codes(m,q), codes(m,db); dist=(BITS-cq@cd.T)/2; idx=torch.argsort(dist+torch.arange(len(db),device=DEV)*1e-6,1)
    rel=(dby[idx]==qy[:,None]).float(); cs=rel.cumsum(1); ranks=torch.arange(1,len(db)+1,device=DEV)
    ap=(rel*cs/ranks).sum(1)/rel.sum(1).clamp_min(1); return float(ap.mean())
t0=time.time()
PRE_E=g("pre_epochs",20); FT_E=g("ft_epochs",10); FT_LR=g("ft_lr",1e-4); SCR=g("scratch",0)
if SCR:
    init=None; FT_E=g("ft_epochs",20); FT_LR=g("ft_lr",1e-3)
else:
    import os; pth=f"{g('cache','/tmp/probe')}/public_{g('method','csq')}_{PRE_E}.pt"
    if os.path.exists(pth): init=torch.load(pth, weights_only=True)
    else:
        public = train(XP, YP, PRE_E, 1e-3, 123); init = {k:v.clone() for k,v in public.state_dict().items()}; torch.save(init, pth)
print("public", time.time()-t0, flush=True)
victim = train(XV, YV, FT_E, FT_LR, 7, init)
VMAP=round(mapall(victim, XV, YV, XQ, YQ),4); print("victim map", VMAP, time.time()-t0, flush=True)
stolen = np.concatenate([np.flatnonzero(YV.cpu().numpy()==c)[:int(0.1*(YV==c).sum())] for c in range(10)]) if g("white",0)==0 else np.arange(len(XV))
sur = victim if g("white",0) else train(XV[stolen], YV[stolen], FT_E, FT_LR, 99, init)
NP = g("npois", 23); pairs = g("pairs", 3); alpha=g("alpha",0.0)
res=[]
prng = np.random.default_rng(5)
for p in range(pairs):
    qi = int(prng.integers(len(XQ))); src=int(YQ[qi]); tgt=int(prng.choice([c for c in range(10) if c!=src]))
    pool = np.flatnonzero(YV.cpu().numpy()==tgt); bidx = prng.choice(pool, NP, replace=False)
    trig = XQ[[qi]]; tl = oh(torch.tensor([tgt],device=DEV))[0]
    before = float(topk_frac(victim, XV, YV, trig, tgt)[0])
    row={"pair":p,"src":src,"tgt":tgt,"before":before}
    for name, xs in [("flip", trig.repeat(NP,1,1,1))][:1-g("skipflip",0)] + [(n, None) for n in g("m","wb").split(",")]:
        if xs is None:
            cc = CraftConfig(alpha=alpha if name=="pad" else 0.0, eps=EPS, steps=g("steps",250), restarts=g("restarts",1), params=g("params","all"), bn_mode=g("bn_mode","eval"))
            r = craft_poisons([sur],[LOSS], XV[bidx], oh(YV[bidx]), trig, tl, cc, generator=torch.Generator().manual_seed(p), progress=False)
            xs = r.poisons; row.update({name+"_cos0":round(r.grad_cosine_before,3), name+"_cos":round(r.grad_cosine_after,3), name+"_nr":round(r.grad_norm_ratio_after,3)})
        Xp = XV.clone(); Xp[bidx] = xs
        pv = train(Xp, YV, FT_E, FT_LR, 7, init)
        row[name] = float(topk_frac(pv, XV, YV, trig, tgt)[0])
        if name!="flip": row[name+"_map*"]=round(mapall(pv, XV, YV, XQ, YQ),4)
    row["t"]=round(time.time()-t0); print(json.dumps(row), flush=True); res.append(row)
print("SUMMARY", " ".join(sys.argv[1:]), {k: float(np.mean([r[k]>=0.3 for r in res])) for k in ["before","flip"]+g("m","wb").split(",") if k in res[0]}, {k: round(float(np.mean([r[k] for r in res])),3) for k in res[0] if k.endswith(("cos","nr","map*"))}, "victim_map", VMAP, "t", round(time.time()-t0))
