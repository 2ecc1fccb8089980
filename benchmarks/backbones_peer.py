"""PyTorch peer of benchmarks/backbones-worker.ts (run by `npm run bench:backbones`; Python appears only in benchmarks/).

The two pretrained backbones as fundus builds them (src/models/backbones.ts), with random weights (speed only):
- resnet50: torchvision's ResNet-50 with Keras ResNet50 v1's layout, which is what fundus loads: stride 2 on the
  first 1x1 convolution of each downsampling block (torchvision puts it on the 3x3), and a bias on every convolution;
- mobilenetv2: torchvision's MobileNetV2 1.0 with batch norm folded, as fundus ships it: every BatchNorm2d replaced
  by Identity and every convolution given a bias (conv + bias + ReLU6);
each with fundus's head (global average pooling, a Dense of 7 logits). RGB 224x224, batch 16, Adam and sigmoid
cross-entropy (BCEWithLogits) for the training step, eval mode under no_grad for inference; prints one JSON line.
With --export PATH it then writes the network (eval mode, batch 16) as ONNX opset 13 for benchmarks/backbones-ort.ts.
Usage: /usr/bin/python3 benchmarks/backbones_peer.py --network resnet50|mobilenetv2 --threads N
       [--train-steps N] [--infer-batches N] [--batch 16] [--size 224] [--export PATH]
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torchvision

from peer_timing import time_it

CLASSES = 7


def with_conv_bias(module):
    """Gives every convolution a (zero) bias, as the Keras ResNet-50 and the BN-folded MobileNetV2 have."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.out_channels))
    return module


def without_batch_norm(module):
    """Replaces every BatchNorm2d with Identity (the shipped MobileNetV2 has its batch norm folded into the convs)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        else:
            without_batch_norm(child)
    return module


def resnet50():
    model = torchvision.models.resnet50(weights=None)
    # Keras ResNet50 (v1): the downsampling block strides its first 1x1 convolution, not the 3x3 (torchvision's v1.5).
    for layer in (model.layer2, model.layer3, model.layer4):
        block = layer[0]
        block.conv1.stride = (2, 2)
        block.conv2.stride = (1, 1)
    model.fc = nn.Linear(2048, CLASSES)
    return with_conv_bias(model)


def mobilenetv2():
    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier = nn.Linear(1280, CLASSES)  # fundus's head: GAP then Dense, no dropout
    return with_conv_bias(without_batch_norm(model))


NETWORKS = {"resnet50": resnet50, "mobilenetv2": mobilenetv2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", choices=sorted(NETWORKS), required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--infer-batches", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--export", metavar="PATH")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    batch = args.batch
    result = {"side": "pytorch", "network": args.network, "version": torch.__version__, "threads": torch.get_num_threads(),
              "batch": batch, "size": args.size}
    model = NETWORKS[args.network]()
    x = torch.rand(batch, 3, args.size, args.size)
    # The same multi-hot labels as the worker.
    labels = torch.tensor([[1.0 if (i * CLASSES + j) % 3 == 0 else 0.0 for j in range(CLASSES)] for i in range(batch)])

    if args.infer_batches > 0:
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)

        result["inferImagesPerSecond"] = batch / time_it(infer, args.infer_batches)

    if args.train_steps > 0:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.BCEWithLogitsLoss()

        def step():
            opt.zero_grad()
            loss = loss_fn(model(x), labels)
            loss.backward()
            opt.step()
            loss.item()

        result["trainImagesPerSecond"] = batch / time_it(step, args.train_steps)

    # Peak RSS of inference + training, before the export below, as the worker does before its diagnostics.
    result["peakRssBytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    if args.export:
        model.eval()
        t = time.perf_counter()
        with torch.no_grad():
            torch.onnx.export(model, x, args.export, opset_version=13, input_names=["input"], output_names=["logits"])
        result["onnx"] = {"path": args.export, "seconds": time.perf_counter() - t}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
