"""PyTorch peer for benchmarks/explain.ts: the same network (rebuilt from the tfjs model.json + weights.bin, same
weights) and a hand-written Grad-CAM, timed on the same preprocessed images and classes.

Usage (called by the TS benchmark):
  /usr/bin/python3 benchmarks/explain_peer.py <model-dir> <images.f32> <n> <h> <w> <c> <classes comma-separated> <target-layer> <repeats> <threads> <out.json>

The Grad-CAM is written the efficient way one would by hand: one forward pass of the trunk up to the target layer,
the activations repeated once per class, one forward of the head and one backward for all classes, then the usual
weights (global-average-pooled gradients), weighted sum, ReLU and min-max normalisation.
"""
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_tfjs(model_dir):
    with open(f'{model_dir}/model.json') as f:
        model_json = json.load(f)
    topo = model_json['modelTopology']
    config = topo.get('model_config', topo)['config']
    weights = {}
    raw = np.fromfile(f'{model_dir}/weights.bin', dtype='<u1')
    offset = 0
    for group in model_json['weightsManifest']:
        for spec in group['weights']:
            assert spec['dtype'] == 'float32', spec
            size = int(np.prod(spec['shape'])) if spec['shape'] else 1
            weights[spec['name']] = torch.from_numpy(raw[offset:offset + 4 * size].view('<f4').reshape(spec['shape']).copy())
            offset += 4 * size
    return config, weights


def same_pad(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def activation(name, x):
    if name in (None, 'linear'):
        return x
    if name == 'relu':
        return F.relu(x)
    if name == 'sigmoid':
        return torch.sigmoid(x)
    if name == 'softmax':
        return torch.softmax(x, dim=-1)
    raise ValueError(f'activation {name}')


class Graph:
    """Evaluates a Keras functional config in PyTorch (NCHW inside, Keras semantics at the edges)."""

    def __init__(self, config, weights):
        self.layers = config['layers']
        self.w = weights
        self.inputs = [l[0] for l in config['input_layers']]
        self.output = config['output_layers'][0][0]

    def weight(self, layer, name):
        for key in (f"{layer['config']['name']}/{name}", f"{layer['name']}/{name}"):
            if key in self.w:
                return self.w[key]
        raise KeyError(f"{layer['name']}/{name}")

    def call(self, layer, xs, pre_activation=False):
        cls, cfg = layer['class_name'], layer['config']
        x = xs[0]
        if cls == 'Conv2D':
            k = self.weight(layer, 'kernel').permute(3, 2, 0, 1)
            b = self.weight(layer, 'bias') if cfg.get('use_bias', True) else None
            kh, kw = cfg['kernel_size']
            sh, sw = cfg['strides']
            if cfg['padding'] == 'same':
                pt, pb = same_pad(x.shape[2], kh, sh)
                pl, pr = same_pad(x.shape[3], kw, sw)
                x = F.pad(x, (pl, pr, pt, pb))
            return activation(cfg.get('activation'), F.conv2d(x, k, b, stride=(sh, sw)))
        if cls == 'BatchNormalization':
            return F.batch_norm(x, self.weight(layer, 'moving_mean'), self.weight(layer, 'moving_variance'),
                                self.weight(layer, 'gamma'), self.weight(layer, 'beta'), False, 0.0, cfg.get('epsilon', 1e-3))
        if cls == 'MaxPooling2D' or cls == 'AveragePooling2D':
            kh, kw = cfg['pool_size']
            sh, sw = cfg['strides'] or cfg['pool_size']
            if cfg['padding'] == 'same':
                pt, pb = same_pad(x.shape[2], kh, sh)
                pl, pr = same_pad(x.shape[3], kw, sw)
                x = F.pad(x, (pl, pr, pt, pb), value=-math.inf if cls == 'MaxPooling2D' else 0.0)
            pool = F.max_pool2d if cls == 'MaxPooling2D' else F.avg_pool2d
            return pool(x, (kh, kw), (sh, sw))
        if cls == 'GlobalAveragePooling2D':
            return x.mean(dim=(2, 3))
        if cls == 'GlobalMaxPooling2D':
            return x.amax(dim=(2, 3))
        if cls == 'Flatten':
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if x.dim() == 4 else x
        if cls == 'Dense':
            y = x @ self.weight(layer, 'kernel')
            if cfg.get('use_bias', True):
                y = y + self.weight(layer, 'bias')
            return y if pre_activation else activation(cfg.get('activation'), y)
        if cls == 'Activation':
            return x if pre_activation and cfg['activation'] in ('sigmoid', 'softmax') else activation(cfg['activation'], x)
        if cls == 'Add':
            return sum(xs)
        if cls in ('Dropout', 'SpatialDropout2D'):
            return x
        raise ValueError(f'layer class {cls} not supported by the peer')

    def run(self, feeds, stop_at=None):
        """Runs the graph from `feeds` (name -> tensor); returns all computed tensors."""
        values = dict(feeds)
        for layer in self.layers:
            name = layer['name']
            if name in values or layer['class_name'] == 'InputLayer':
                continue
            nodes = layer['inbound_nodes']
            if not nodes:
                continue
            ins = [n[0] for n in nodes[0]]
            if not all(i in values for i in ins):
                continue
            values[name] = self.call(layer, [values[i] for i in ins], pre_activation=(name == self.output))
            if name == stop_at:
                break
        return values


def main():
    model_dir, images, n, h, w, c, classes, target, repeats, threads, out = sys.argv[1:12]
    n, h, w, c, repeats = int(n), int(h), int(w), int(c), int(repeats)
    torch.set_num_threads(int(threads))  # the same number of threads as the fundus engine
    classes = [int(k) for k in classes.split(',')]
    torch.set_grad_enabled(True)
    config, weights = load_tfjs(model_dir)
    g = Graph(config, weights)
    x_all = torch.from_numpy(np.fromfile(images, dtype='<f4').reshape(n, h, w, c)).permute(0, 3, 1, 2).contiguous()
    input_name = g.inputs[0]

    # The head: layers downstream of the target; its context: what those read from outside (a skip around the target).
    downstream, context = {target}, set()
    for layer in g.layers:
        ins = [n[0] for n in layer['inbound_nodes'][0]] if layer['inbound_nodes'] else []
        if any(i in downstream for i in ins):
            downstream.add(layer['name'])
            context.update(i for i in ins if i not in downstream)

    def gradcam(x):
        with torch.no_grad():
            trunk = g.run({input_name: x}, stop_at=target)
        a = trunk[target].detach().repeat(len(classes), 1, 1, 1).requires_grad_(True)
        feeds = {k: trunk[k].repeat(len(classes), *([1] * (trunk[k].dim() - 1))) for k in context}
        feeds[target] = a
        logits = g.run(feeds)[g.output]
        select = torch.zeros_like(logits)
        select[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
        (logits * select).sum().backward()
        weights_ = a.grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights_ * a).sum(dim=1))
        flat = cam.reshape(len(classes), -1)
        lo, hi = flat.min(dim=1, keepdim=True)[0], flat.max(dim=1, keepdim=True)[0]
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(cam.shape), (logits * select).sum(dim=1)

    heat0, logits0 = gradcam(x_all[:1])  # warm-up, and the maps to compare with fundus
    # OpenMP threads spin when the cores are busy; on a shared machine one thread can beat two. PyTorch gets the better.
    per_threads = {}
    for t in sorted({1, int(threads)}):
        torch.set_num_threads(t)
        gradcam(x_all[:1])
        times = []
        for _ in range(repeats):
            for i in range(n):
                t0 = time.perf_counter()
                gradcam(x_all[i:i + 1])
                times.append(time.perf_counter() - t0)
        per_threads[t] = sorted(times)[len(times) // 2]
    best = min(per_threads, key=per_threads.get)
    with open(out, 'w') as f:
        json.dump({
            'secondsPerImage': per_threads[best],
            'threads': best,
            'secondsByThreads': per_threads,
            'torch': torch.__version__,
            'heatmaps0': heat0.detach().reshape(len(classes), -1).tolist(),
            'logits0': logits0.detach().tolist(),
        }, f)


if __name__ == '__main__':
    main()
