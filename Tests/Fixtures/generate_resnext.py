#!/usr/bin/env python3
"""Writes Tests/Fixtures/ops/resnext_bottleneck_1_2_1_1_g8w4.safetensors: torchvision's own
ResNet code as a ResNeXt (groups 8, width per group 4, so grouped 3x3 convs of 8, 16, 32 and
64 channels), with a quarter of the usual stage planes (16, 32, 64, 128; outputs 64, 128, 256,
512), layers 1,2,1,1, 10 classes, eval-mode batch norm with random statistics. Same format as
../shared/fixtures (see its README): float32 inputs and weights, float64 expected outputs
computed in float64; weights under `weights.<torchvision name>`.

Needs: torch, torchvision, safetensors.   Run: python3 generate_resnext.py
"""
import os
import torch
import torchvision
from torchvision.models.resnet import ResNet, Bottleneck
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
NAME, SEED, GROUPS, WIDTH = "resnext_bottleneck_1_2_1_1_g8w4", 60, 8, 4


def f32(t):
    """Round to float32 values but keep float64 storage for exact references."""
    return t.float().double()


def main():
    torch.set_default_dtype(torch.float64)
    original = ResNet._make_layer
    ResNet._make_layer = lambda self, block, planes, blocks, stride=1, dilate=False: \
        original(self, block, planes // 4, blocks, stride, dilate)
    torch.manual_seed(SEED)
    net = ResNet(Bottleneck, [1, 2, 1, 1], groups=GROUPS, width_per_group=WIDTH)
    ResNet._make_layer = original
    net.fc = torch.nn.Linear(512, 10)
    net = net.double()
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn_like(mod.running_mean) * 0.1)
            mod.running_var.copy_(torch.rand_like(mod.running_var) + 0.5)
            mod.weight.data.copy_(torch.rand_like(mod.weight) + 0.5)
            mod.bias.data.copy_(torch.randn_like(mod.bias) * 0.1)
    for p in net.parameters():
        p.data.copy_(f32(p.data))
    for _, buf in net.named_buffers():
        if buf.dtype == torch.float64:
            buf.copy_(f32(buf))
    net.eval()
    g = torch.Generator().manual_seed(SEED + 1)
    x = f32(torch.randn(2, 3, 64, 80, generator=g))
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        c2 = net.layer1(h); c3 = net.layer2(c2); c4 = net.layer3(c3); c5 = net.layer4(c4)
        logits = net.fc(torch.flatten(net.avgpool(c5), 1))
    out = {"input": x.float()}
    for k, v in {"expected_c2": c2, "expected_c3": c3, "expected_c4": c4, "expected_c5": c5,
                 "expected_logits": logits}.items():
        out[k] = v.double().contiguous()
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            out["weights." + k] = v.float().contiguous()
    meta = dict(op="resnet", block="bottleneck (expansion 4)", layers="1,2,1,1", stem_width="64",
                stage_planes="16,32,64,128", groups=str(GROUPS), width_per_group=str(WIDTH), num_classes="10",
                norm="frozen batch norm (eval mode, eps 1e-5)",
                weight_names="torchvision state_dict names under the prefix 'weights.'",
                reference="torchvision.models.resnet.ResNet(groups=%d, width_per_group=%d) %s (float64, eval mode)"
                          % (GROUPS, WIDTH, torchvision.__version__))
    path = os.path.join(os.environ.get("FIXTURE_OUT", os.path.join(HERE, "ops")), NAME + ".safetensors")
    save_file(out, path, metadata=meta)
    print("wrote", path, {k: tuple(v.shape) for k, v in out.items() if not k.startswith("weights.")})


if __name__ == "__main__":
    main()
