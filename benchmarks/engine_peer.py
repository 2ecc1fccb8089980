"""PyTorch peer of benchmarks/engine-worker.ts (run by `npm run bench:engine`; Python appears only in benchmarks/).

The reference AlexNet exactly as src/models/architectures.ts builds it (conv -> ReLU -> BatchNorm, max pools,
dense logits), green channel 227x227, batch 32, Adam, softmax cross-entropy; prints one JSON line.
Usage: /usr/bin/python3 benchmarks/engine_peer.py --threads N [--train-steps N] [--infer-batches N] [--layers]
"""
import argparse
import json
import resource

import torch
import torch.nn as nn
import torch.nn.functional as F

from peer_timing import time_it

BATCH = 32
CLASSES = 7
CONV_LAYERS = [
    ("conv1", 227, 1, 96, 11, 4, 0),
    ("conv2", 27, 96, 256, 5, 1, 2),
    ("conv3", 13, 256, 384, 3, 1, 1),
    ("conv4", 13, 384, 384, 3, 1, 1),
    ("conv5", 13, 384, 256, 3, 1, 1),
]


class AlexNet(nn.Module):
    def __init__(self):
        super().__init__()

        def block(c, o, k, s, p):
            # tfjs-layers' BatchNormalization defaults: epsilon 1e-3, momentum 0.99 (PyTorch counts 1 - momentum).
            return nn.Sequential(nn.Conv2d(c, o, k, s, p), nn.ReLU(inplace=True), nn.BatchNorm2d(o, eps=1e-3, momentum=0.01))

        self.features = nn.Sequential(
            block(1, 96, 11, 4, 0), nn.MaxPool2d(3, 2),
            block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
            block(256, 384, 3, 1, 1),
            block(384, 384, 3, 1, 1),
            block(384, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.logits = nn.Linear(256 * 6 * 6, CLASSES)

    def forward(self, x):
        return self.logits(torch.flatten(self.features(x), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--infer-batches", type=int, default=5)
    ap.add_argument("--layers", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    result = {"side": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "batch": BATCH}
    model = AlexNet()
    x = torch.rand(BATCH, 1, 227, 227)
    labels = torch.arange(BATCH) % CLASSES

    if args.infer_batches > 0:
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)

        result["inferImagesPerSecond"] = BATCH / time_it(infer, args.infer_batches)

    if args.train_steps > 0:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            loss.item()

        result["trainImagesPerSecond"] = BATCH / time_it(step, args.train_steps)

    result["peakRssBytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    if args.layers:
        layers = []
        for name, hw, c, o, k, s, p in CONV_LAYERS:
            xs = torch.rand(BATCH, c, hw, hw)
            w = torch.rand(o, c, k, k)
            y = F.conv2d(xs, w, stride=s, padding=p)
            dy = torch.rand_like(y)
            flops = 2 * BATCH * y.shape[2] * y.shape[3] * o * c * k * k
            fwd = time_it(lambda: F.conv2d(xs, w, stride=s, padding=p), 3)
            bwd_data = time_it(lambda: torch.nn.grad.conv2d_input(xs.shape, w, dy, stride=s, padding=p), 3)
            bwd_weights = time_it(lambda: torch.nn.grad.conv2d_weight(xs, w.shape, dy, stride=s, padding=p), 3)
            layers.append({"layer": name, "forward": flops / fwd / 1e9, "backwardData": flops / bwd_data / 1e9,
                           "backwardWeights": flops / bwd_weights / 1e9})
        result["convGflops"] = layers
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
