#!/usr/bin/env python3
"""Turn a torchvision or timm ResNet checkpoint (.pth) into safetensors for dcn-train.

    pip install torch safetensors
    python scripts/export_torchvision_weights.py resnet50-0676ba61.pth weights/resnet50.safetensors
    # or straight from torchvision's model zoo (downloads once):
    python scripts/export_torchvision_weights.py --torchvision resnet50 weights/resnet50.safetensors

Names stay torchvision's (conv1.weight, layer1.0.bn1.running_mean, fc.weight, ...); timm ResNets
use the same names. Point `backbone.weights` at the output (and `backbone.weights_prefix` at a
prefix if the file has one). The project itself never needs Python.
"""
import argparse

import torch
from safetensors.torch import save_file

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("source", help="a .pth file, or a torchvision model name with --torchvision")
parser.add_argument("output", help="the .safetensors file to write")
parser.add_argument("--torchvision", action="store_true", help="source names a torchvision model (IMAGENET1K_V1 weights)")
args = parser.parse_args()

if args.torchvision:
    import torchvision
    state = getattr(torchvision.models, args.source)(weights="IMAGENET1K_V1").state_dict()
else:
    state = torch.load(args.source, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
state = {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}
tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
save_file(tensors, args.output, metadata={"source": args.source})
print(f"wrote {len(tensors)} tensors to {args.output}")
