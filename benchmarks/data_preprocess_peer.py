"""Peer for benchmarks/data-preprocess.ts: the same decode, disc crop, square pad, resize and channel choice with
PIL + numpy, the way a PyTorch Dataset would do it, in one process. Paths on stdin, one per line.
Usage: python3 data_preprocess_peer.py N SIZE green|rgb CLAHE(0|1; ignored: PIL has no CLAHE)"""
import sys
import time

import numpy as np
from PIL import Image


def preprocess(path, size, green):
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w, _ = img.shape
    bright = img.max(axis=2) > 18
    rows = np.nonzero(bright.sum(axis=1) > 0.02 * w)[0]
    cols = np.nonzero(bright.sum(axis=0) > 0.02 * h)[0]
    if len(rows) and len(cols):
        x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    else:
        x0, x1, y0, y1 = 0, w, 0, h
    side = max(x1 - x0, y1 - y0)
    sq = np.zeros((side, side, 3), np.uint8)
    ox, oy = (side - (x1 - x0)) // 2, (side - (y1 - y0)) // 2
    sq[oy:oy + y1 - y0, ox:ox + x1 - x0] = img[y0:y1, x0:x1]
    out = np.asarray(Image.fromarray(sq).resize((size, size), Image.LANCZOS), np.float32) / 255.0
    if green:
        out = out[:, :, 1:2]
    return (out - 0.5) / 0.25


def main():
    n, size, channels = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    paths = [p for p in sys.stdin.read().split("\n") if p][:n]
    t0 = time.perf_counter()
    for p in paths:
        preprocess(p, size, channels == "green")
    s = time.perf_counter() - t0
    print(f"{len(paths) / s:.1f} images/s ({len(paths)} images in {s:.2f} s)")


main()
