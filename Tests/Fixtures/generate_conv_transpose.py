#!/usr/bin/env python3
"""Regenerates the transposed-convolution fixtures Tests/Fixtures/ops/conv_transpose2d_*.safetensors
(same format as ../shared/fixtures: see its README).

Every expected value comes from torch.nn.functional.conv_transpose2d computed in float64 from
float32 inputs; gradients are those of sum(output * grad_output) by autograd. The weight is in
PyTorch's layout [Cin, Cout / groups, kh, kw]. Metadata: stride_h/w, pad_h/w, out_pad_h/w
(output_padding), dil_h/w, groups.

Needs: torch, safetensors, numpy.   Run: python3 generate_conv_transpose.py
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_default_dtype(torch.float64)


def f32(t):
    """Round to float32 values but keep float64 storage for exact references."""
    return t.float().double()


def save(name, tensors, meta):
    out = {}
    for k, v in tensors.items():
        v = v.detach().contiguous()
        if k.startswith("expected_") or (k.startswith("grad_") and k != "grad_output"):
            out[k] = v.double()
        else:
            out[k] = v.float()
    meta = {k: str(v) for k, v in meta.items()}
    path = os.path.join(os.environ.get("FIXTURE_OUT", os.path.join(HERE, "ops")), name + ".safetensors")
    save_file(out, path, metadata=meta)
    print("wrote", name, os.path.getsize(path), "bytes", {k: tuple(v.shape) for k, v in out.items()})


def conv_transpose_case(name, seed, n, cin, h, w, cout, kh, kw, stride, pad, out_pad, dil, groups, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = f32(torch.randn(n, cin, h, w, generator=g)).requires_grad_()
    wt = f32(torch.randn(cin, cout // groups, kh, kw, generator=g) * 0.3).requires_grad_()
    b = f32(torch.randn(cout, generator=g)).requires_grad_() if bias else None
    y = F.conv_transpose2d(x, wt, b, stride, pad, out_pad, groups, dil)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    t = {"input": x, "weight": wt, "expected_output": y, "grad_output": gy,
         "grad_input": x.grad, "grad_weight": wt.grad}
    if bias:
        t.update(bias=b, grad_bias=b.grad)
    save(name, t, dict(op="conv_transpose2d", stride_h=stride[0], stride_w=stride[1], pad_h=pad[0], pad_w=pad[1],
                       out_pad_h=out_pad[0], out_pad_w=out_pad[1], dil_h=dil[0], dil_w=dil[1], groups=groups,
                       reference="torch.nn.functional.conv_transpose2d %s (float64)" % torch.__version__))


def main():
    # The Mask R-CNN mask head's upsampling: 2x2, stride 2 (each output pixel gets one tap).
    conv_transpose_case("conv_transpose2d_2x2_s2", 30, 3, 8, 5, 5, 6, 2, 2, (2, 2), (0, 0), (0, 0), (1, 1), 1)
    # Kernel = stride again, with padding, output padding and groups: output rows and columns no tap reaches.
    conv_transpose_case("conv_transpose2d_2x3_s2x3_p1_op1x2_g2", 35, 2, 4, 4, 3, 6, 2, 3, (2, 3), (1, 1), (1, 2), (1, 1), 2)
    conv_transpose_case("conv_transpose2d_3x3_s2_p1_op1", 31, 2, 5, 6, 7, 4, 3, 3, (2, 2), (1, 1), (1, 1), (1, 1), 1)
    conv_transpose_case("conv_transpose2d_groups2_s2x1", 32, 2, 6, 5, 6, 4, 3, 2, (2, 1), (1, 0), (1, 0), (1, 1), 2)
    # Output padding 1 with stride 1 is allowed because the dilation is 2 (PyTorch's rule).
    conv_transpose_case("conv_transpose2d_dil2_pad_nobias", 33, 2, 4, 6, 5, 5, 3, 3, (1, 2), (2, 1), (1, 1), (2, 2), 1,
                        bias=False)
    conv_transpose_case("conv_transpose2d_1x1", 34, 2, 7, 4, 6, 3, 1, 1, (1, 1), (0, 0), (0, 0), (1, 1), 1)


if __name__ == "__main__":
    main()
