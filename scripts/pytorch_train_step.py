#!/usr/bin/env python3
"""PyTorch's training step of the detector's backbone, the peer of `dcn-bench train-step`.

A reference for comparison only: the project never needs Python. It times the backbone that
`dcn-bench train-step` times (torchvision's ResNet-50, frozen batch norm, stem and res2 frozen,
res5 with stride 1 and dilation 2, batch 1), forward to res4 and res5 and backward from random
gradients on both (what the RPN and the RoI head send back), on `--threads` threads.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision
    /tmp/tv/bin/python scripts/pytorch_train_step.py --height 800 --width 1216 --threads 2

`--deformable` makes every 3x3 conv of res3-res5 a modulated deformable conv (torchvision's
`deform_conv2d`, offsets and masks from a zero-initialised 3x3 conv, as ours), the paper's
mdconv@c3~c5. `--channels-last` runs oneDNN on NHWC tensors (often faster); the default is NCHW.
Prints the median of `--steps` timed steps after one warm-up.
"""
import argparse
import statistics
import time

import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d, deform_conv2d


class ModulatedDeformConv(torch.nn.Module):
    """A 3x3 conv whose taps move by learned offsets and are scaled by learned masks."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.conv = conv
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        self.offset = torch.nn.Conv2d(conv.in_channels, 3 * taps, conv.kernel_size, conv.stride,
                                      conv.padding, conv.dilation)
        torch.nn.init.zeros_(self.offset.weight)
        torch.nn.init.zeros_(self.offset.bias)

    def forward(self, x):
        raw = self.offset(x)
        taps = raw.shape[1] // 3
        offsets, mask = raw[:, : 2 * taps], torch.sigmoid(raw[:, 2 * taps:])
        c = self.conv
        return deform_conv2d(x, offsets, c.weight, c.bias, c.stride, c.padding, c.dilation, mask)


def backbone(deformable: bool) -> torch.nn.Module:
    net = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d,
                                      replace_stride_with_dilation=[False, False, True])
    for module in [net.conv1, net.bn1, net.layer1]:
        for p in module.parameters():
            p.requires_grad_(False)
    if deformable:
        for layer in [net.layer2, net.layer3, net.layer4]:
            for block in layer:
                block.conv2 = ModulatedDeformConv(block.conv2)
    return net


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--deformable", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = backbone(args.deformable)
    image = torch.randn(1, 3, args.height, args.width)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    image = image.contiguous(memory_format=fmt)

    def forward():
        x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
        res4 = net.layer3(net.layer2(net.layer1(x)))
        return res4, net.layer4(res4)

    res4, res5 = forward()
    d4, d5 = torch.randn_like(res4), torch.randn_like(res5)
    fwd, bwd = [], []
    for step in range(args.steps + 1):
        net.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        res4, res5 = forward()
        t1 = time.perf_counter()
        torch.autograd.backward([res4, res5], [d4, d5])
        t2 = time.perf_counter()
        if step > 0:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    f, b = statistics.median(fwd), statistics.median(bwd)
    kind = "mdconv@c3~c5 (torchvision deform_conv2d)" if args.deformable else "regular convs"
    layout = "channels-last" if args.channels_last else "NCHW"
    print(f"PyTorch {torch.__version__} backbone, {kind}, {layout}, 1 x {args.height}x{args.width}, "
          f"{args.threads} threads, oneDNN {torch.backends.mkldnn.is_available()}")
    print(f"  backbone fwd {f:8.3f} s\n  backbone bwd {b:8.3f} s\n  backbone     {f + b:8.3f} s")


if __name__ == "__main__":
    main()
