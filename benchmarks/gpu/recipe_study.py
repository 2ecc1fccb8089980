"""PyTorch peer study of training recipes for the bundled model (a benchmark, never part of the product).

Why: a 2-core CPU trains one 40-epoch run of the bundled network in ~52 min, so recipes cannot be compared there.
This script replays fundus's recipe (benchmarks/gpu/README.md lists what matches and what does not) on a GPU for
many variants and seeds at once, on the photos preprocessed by fundus itself (benchmarks/gpu/pack.ts), and reports
validation and test macro AUC per variant. Variants that win on validation are then trained by fundus on the CPU.

    python3 recipe_study.py --pack gpu-pack --out results.jsonl [--only name,...] [--workers 8] [--deadline 300]
"""
import argparse
import json
import math
import os
import sys
import time
from multiprocessing import get_context

import numpy as np

CLASSES = 7


def load_pack(root):
    from PIL import Image
    index = json.load(open(os.path.join(root, "index.json")))
    xs, ys, parts = [], [], []
    for row in index["images"]:
        with Image.open(os.path.join(root, "images", row["file"])) as im:
            xs.append(np.asarray(im.convert("RGB")))
        ys.append(row["labels"])
        parts.append(row["part"])
    return np.stack(xs), np.asarray(ys, dtype=np.float32), np.asarray(parts)


# ---- the network: fundus's resnet18-narrow (src/models/architectures.ts) at any width -------------------------

def build_resnet(width, num_classes, dropout=0.0):
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout, eps=1e-3)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout, eps=1e-3)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return self.relu(y + (x if self.proj is None else self.proj(x)))

    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width, eps=1e-3), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage in range(4):
        cout = width * 2 ** stage
        for block in range(2):
            layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(cin, num_classes))
    net = nn.Sequential(*layers)
    for m in net.modules():  # he_normal everywhere, as fundus does
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def build_network(cfg, num_classes):
    if cfg["arch"] == "resnet50":
        import torchvision
        return torchvision.models.resnet50(num_classes=num_classes)
    return build_resnet(cfg["width"], num_classes, cfg.get("dropout", 0.0))


# ---- augmentation: src/data/augment.ts, batched ------------------------------------------------------------------

def augment(x, g, a):
    """x: B×3×H×W in [0, 1]. Flips, rotation, zoom, shift (bilinear, black outside), then disc-only photometry."""
    import torch
    import torch.nn.functional as F
    b = x.shape[0]
    dev = x.device
    u = lambda: torch.rand(b, device=dev, generator=g)
    sym = lambda r: (2 * u() - 1) * r
    fx = torch.where(u() < a["hflip"], -1.0, 1.0)
    fy = torch.where(u() < a["vflip"], -1.0, 1.0)
    ang = sym(a["rotation"]) * math.pi / 180
    zoom = 1 + sym(a["scale"])
    dx, dy = sym(a["translate"]), sym(a["translate"])
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    # output (normalised coords) -> source: flip ∘ inverse rotation/zoom ∘ unshift, as in applyAugment
    theta = torch.stack([
        torch.stack([fx * cos, fx * sin, -fx * (cos * dx * 2 + sin * dy * 2)], 1),
        torch.stack([-fy * sin, fy * cos, -fy * (-sin * dx * 2 + cos * dy * 2)], 1),
    ], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=True)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if a["brightness"] or a["contrast"] or a["gamma"]:
        gamma = torch.exp(sym(math.log(1 + a["gamma"])))[:, None, None, None]
        contrast = (1 + sym(a["contrast"]))[:, None, None, None]
        bright = sym(a["brightness"])[:, None, None, None]
        disc = x > 0.03
        mean = (x * disc).sum((2, 3), keepdim=True) / disc.sum((2, 3), keepdim=True).clamp(min=1)
        mean = torch.where(disc.sum((2, 3), keepdim=True) > 0, mean, torch.full_like(mean, 0.5)) ** gamma
        y = (x.clamp(max=1) ** gamma - mean) * contrast + mean + bright
        x = torch.where(disc, y.clamp(0, 1), x)
    return x


# ---- metrics ------------------------------------------------------------------------------------------------------

def macro_auc(y, p):
    from sklearn.metrics import roc_auc_score
    aucs = [roc_auc_score(y[:, k], p[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return float(np.mean(aucs)), [float(a) for a in aucs]


def best_f1_thresholds(y, p):
    ts = []
    for k in range(y.shape[1]):
        order = np.argsort(-p[:, k])
        tp = np.cumsum(y[order, k])
        fp = np.cumsum(1 - y[order, k])
        f1 = 2 * tp / (tp + fp + y[:, k].sum())
        i = int(np.argmax(f1))
        ts.append(float(p[order[i], k]))
    return np.asarray(ts)


def mean_f1(y, p, t):
    f1s = []
    for k in range(y.shape[1]):
        pred = p[:, k] >= t[k]
        tp = float((pred & (y[:, k] > 0)).sum())
        f1s.append(2 * tp / max(1.0, pred.sum() + y[:, k].sum()))
    return float(np.mean(f1s))


# ---- one run ------------------------------------------------------------------------------------------------------

DEFAULT_AUG = dict(hflip=0.5, vflip=0.2, rotation=15, scale=0.1, translate=0.03, brightness=0.08, contrast=0.15, gamma=0.2)


def run(cfg, data, device):
    import torch
    import torch.nn.functional as F
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    seed = cfg.get("seed", 42)
    torch.manual_seed(seed)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    xs, ys, parts = data
    x_all = torch.from_numpy(xs).to(device).permute(0, 3, 1, 2).contiguous()  # uint8 N×3×H×W
    size = cfg["size"]
    y_all = torch.from_numpy(ys).to(device)
    idx = {p: torch.from_numpy(np.nonzero(parts == p)[0]).to(device) for p in ("train", "validation", "test")}

    def pixels(i):
        x = x_all[i].float() / 255
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear", antialias=False)
        return x

    norm = lambda x: (x - 0.5) / 0.25
    net = build_network(cfg, CLASSES).to(device).to(memory_format=torch.channels_last)
    ytr = y_all[idx["train"]]
    n = float(len(ytr))
    pos = ytr.sum(0).clamp(min=1)
    neg = (n - ytr.sum(0)).clamp(min=1)
    if cfg.get("class_weights", True):
        pw, nw = (n / (2 * pos)).clamp(max=10), (n / (2 * neg)).clamp(max=10)
    else:
        pw, nw = torch.ones(CLASSES, device=device), torch.ones(CLASSES, device=device)
    bs, epochs = cfg["batch"], cfg["epochs"]
    steps_per_epoch = math.ceil(len(idx["train"]) / bs)
    total, warm = epochs * steps_per_epoch, round(cfg.get("warmup", 1) * steps_per_epoch)
    lr, min_lr = cfg["lr"], cfg["lr"] / 50
    if cfg["opt"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-7)
    elif cfg["opt"] == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=lr, eps=1e-7, weight_decay=cfg["wd"])
    else:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=cfg["wd"])
    aug = dict(DEFAULT_AUG, **cfg.get("aug", {}))
    smooth, mixup = cfg.get("smooth", 0.0), cfg.get("mixup", 0.0)

    def predict(part, tta=False):
        net.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(idx[part]), 256):
                x = norm(pixels(idx[part][s:s + 256])).contiguous(memory_format=torch.channels_last)
                p = torch.sigmoid(net(x))
                if tta:
                    p = (p + torch.sigmoid(net(torch.flip(x, dims=[3])))) / 2
                out.append(p)
        net.train()
        return torch.cat(out).cpu().numpy()

    yv, yt = y_all[idx["validation"]].cpu().numpy(), y_all[idx["test"]].cpu().numpy()
    best = (-1.0, None, None, 0)
    curve = []
    step = 0
    t0 = time.time()
    for epoch in range(epochs):
        perm = idx["train"][torch.randperm(len(idx["train"]), device=device, generator=g)]
        for s in range(0, len(perm), bs):
            i = perm[s:s + bs]
            rate = lr * (step + 1) / warm if step < warm else \
                min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1, (step - warm) / max(1, total - warm))))
            for group in opt.param_groups:
                group["lr"] = rate
            x = augment(pixels(i), g, aug) if cfg.get("augment", True) else pixels(i)
            y = y_all[i]
            if mixup > 0:
                lam = float(np.random.default_rng(seed * 100003 + step).beta(mixup, mixup))
                j = torch.randperm(len(i), device=device, generator=g)
                x, y = lam * x + (1 - lam) * x[j], lam * y + (1 - lam) * y[j]
            if smooth > 0:
                y = y * (1 - smooth) + smooth / 2
            z = net(norm(x).contiguous(memory_format=torch.channels_last))
            loss = (y * F.softplus(-z) * pw + (1 - y) * F.softplus(z) * nw).mean(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        pv = predict("validation")
        auc, _ = macro_auc(yv, pv)
        curve.append(round(auc, 4))
        if auc > best[0]:
            best = (auc, {k: v.detach().clone() for k, v in net.state_dict().items()}, pv, epoch + 1)
    last_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best[1])
    pv, pt = best[2], predict("test")
    pvt, ptt = predict("validation", tta=True), predict("test", tta=True)
    t = best_f1_thresholds(yv, pv)
    test_auc, per_class = macro_auc(yt, pt)
    net.load_state_dict(last_state)
    pl = predict("test")
    return dict(
        name=cfg["name"], seed=seed, val_auc=round(best[0], 4), best_epoch=best[3], epochs=epochs,
        test_auc=round(test_auc, 4), test_f1=round(mean_f1(yt, pt, t), 4),
        test_auc_per_class=[round(a, 4) for a in per_class],
        val_auc_tta=round(macro_auc(yv, pvt)[0], 4), test_auc_tta=round(macro_auc(yt, ptt)[0], 4),
        test_f1_tta=round(mean_f1(yt, ptt, best_f1_thresholds(yv, pvt)), 4),
        last_val_auc=curve[-1], last_test_auc=round(macro_auc(yt, pl)[0], 4),
        curve=curve, seconds=round(time.time() - t0, 1), cfg=cfg,
    )


# ---- the variants -------------------------------------------------------------------------------------------------

def variants():
    base = dict(arch="resnet", width=16, size=128, pack="p128", batch=16, epochs=40, opt="adam", lr=2e-3, wd=0.0)
    v = lambda name, **kw: dict(base, name=name, **kw)
    strong = dict(rotation=30, scale=0.15, translate=0.05, brightness=0.1, contrast=0.2, gamma=0.25)
    out = [
        # the bundled recipe (scripts/train-bundled.sh), then one change at a time; same 40-epoch budget
        v("bundled"),
        v("mixup0.2", mixup=0.2),
        v("mixup0.4", mixup=0.4),
        v("adamw0.05", opt="adamw", wd=0.05),
        v("adamw0.2", opt="adamw", wd=0.2),
        v("strong-aug", aug=strong),
        v("smooth0.05", smooth=0.05),
        v("no-class-weights", class_weights=False),
        v("sgd0.05", opt="sgd", lr=0.05, wd=5e-4),
        v("lr1e-3", lr=1e-3),
        v("lr4e-3", lr=4e-3),
        v("batch32-lr4e-3", batch=32, lr=4e-3),
        v("dropout0.3", dropout=0.3),
        v("adamw0.05-mixup0.2", opt="adamw", wd=0.05, mixup=0.2),
        v("adamw0.05-strong", opt="adamw", wd=0.05, aug=strong),
        v("adamw0.05-dropout0.3", opt="adamw", wd=0.05, dropout=0.3),
        # budget-matched alternatives (CPU cost of one epoch relative to the bundled network, measured by fundus)
        v("w24-18ep", width=24, epochs=18),
        v("160px-26ep", size=160, pack="p224", epochs=26),
        # not budget-bound: how far the same family goes with more compute (the from-scratch ceiling)
        v("bundled-80ep", epochs=80),
        v("w32-224px-60ep", width=32, size=224, pack="p224", epochs=60, batch=32, lr=2e-3),
        v("w64-224px-60ep", width=64, size=224, pack="p224", epochs=60, batch=32, lr=2e-3, opt="adamw", wd=0.05),
        v("resnet50-224px-60ep", arch="resnet50", size=224, pack="p224", epochs=60, batch=32, lr=1e-3, opt="adamw", wd=0.05),
    ]
    return out


def worker(args):
    cfg, pack_root, device = args
    data = load_pack(os.path.join(pack_root, cfg["pack"]))
    try:
        return run(cfg, data, device)
    except Exception as e:  # one failed variant must not cost the others
        return dict(name=cfg["name"], seed=cfg.get("seed"), error=repr(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=0, help="override every variant's epochs (smoke runs)")
    ap.add_argument("--limit", type=int, default=0, help="smoke runs: at most this many variants")
    args = ap.parse_args()
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = []
    only = set(filter(None, args.only.split(",")))
    vs = [c for c in variants() if not only or c["name"] in only]
    if args.limit:
        vs = vs[:args.limit]
    seeds = list(map(int, args.seeds.split(",")))
    for c in vs:
        # the bundled recipe gets a third seed (the noise floor); the ceiling runs one
        for seed in seeds + [3] if c["name"] == "bundled" else seeds[:1] if c["epochs"] >= 60 else seeds:
            c = dict(c, seed=seed)
            if args.epochs:
                c["epochs"] = args.epochs
            jobs.append((c, args.pack, device))
    # the ceiling runs are the longest: start them first
    jobs.sort(key=lambda j: -(j[0]["epochs"] * j[0]["size"] ** 2 * j[0].get("width", 64)))
    ctx = get_context("spawn")
    with ctx.Pool(args.workers) as pool, open(args.out, "a") as f:
        for r in pool.imap_unordered(worker, jobs):
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(json.dumps({k: r.get(k) for k in ("name", "seed", "val_auc", "test_auc", "test_f1", "best_epoch", "seconds", "error")}), flush=True)


if __name__ == "__main__":
    main()
