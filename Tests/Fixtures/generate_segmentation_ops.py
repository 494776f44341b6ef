#!/usr/bin/env python3
"""Regenerates the fixtures of DeepLab's two ops, Tests/Fixtures/ops/{bilinear_resize,pixel_cross_entropy}_*.safetensors
(same format as the other op fixtures: float32 inputs, float64 expected values and gradients).

- bilinear_resize: torch.nn.functional.interpolate(mode="bilinear", align_corners=False) to
  (out_h, out_w); with metadata scale_factor, interpolate(scale_factor=s, recompute_scale_factor=False),
  whose source scale is 1 / s (DeepLab's upsampling of stride-16 scores). grad_input is the gradient
  of sum(output * grad_output).
- pixel_cross_entropy: torch.nn.functional.cross_entropy(logits [N, C, H, W], labels [N, H, W],
  ignore_index=255, reduction="mean") (labels stored as I64), grad_input of grad_output * loss.

Needs: torch, safetensors.   Run: python3 generate_segmentation_ops.py
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_default_dtype(torch.float64)


def f32(t):
    return t.float().double()


def save(name, tensors, meta):
    out = {}
    for k, v in tensors.items():
        v = v.detach().contiguous()
        if v.dtype == torch.int64:
            out[k] = v
        elif k.startswith("expected_") or (k.startswith("grad_") and k != "grad_output"):
            out[k] = v.double()
        else:
            out[k] = v.float()
    path = os.path.join(os.environ.get("FIXTURE_OUT", os.path.join(HERE, "ops")), name + ".safetensors")
    save_file(out, path, metadata={k: str(v) for k, v in meta.items()})
    print("wrote", name, os.path.getsize(path), "bytes", {k: tuple(v.shape) for k, v in out.items()})


def resize_case(name, seed, shape, out=None, scale_factor=None):
    g = torch.Generator().manual_seed(seed)
    x = f32(torch.randn(*shape, generator=g)).requires_grad_()
    if scale_factor is None:
        y = F.interpolate(x, size=out, mode="bilinear", align_corners=False)
    else:
        y = F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    meta = dict(op="bilinear_resize", out_h=y.shape[2], out_w=y.shape[3],
                reference="torch.nn.functional.interpolate bilinear align_corners=False %s (float64)" % torch.__version__)
    if scale_factor is not None:
        meta["scale_factor"] = scale_factor
    save(name, {"input": x, "expected_output": y, "grad_output": gy, "grad_input": x.grad}, meta)


def cross_entropy_case(name, seed, n, c, h, w):
    g = torch.Generator().manual_seed(seed)
    x = f32(torch.randn(n, c, h, w, generator=g) * 2).requires_grad_()
    labels = torch.randint(0, c, (n, h, w), generator=g)
    void = torch.rand(n, h, w, generator=g) < 0.2
    labels[void] = 255
    loss = F.cross_entropy(x, labels, ignore_index=255, reduction="mean")
    gy = f32(torch.tensor([0.7]))
    (loss * gy[0]).backward()
    save(name, {"input": x, "labels": labels, "expected_loss": loss.reshape(1), "grad_output": gy, "grad_input": x.grad},
         dict(op="pixel_cross_entropy", ignore_label=255,
              reference="torch.nn.functional.cross_entropy ignore_index=255 %s (float64)" % torch.__version__))


def main():
    resize_case("bilinear_resize_up", 1, (2, 3, 5, 7), out=(12, 17))     # upsampling, uneven ratios
    resize_case("bilinear_resize_down", 2, (1, 2, 9, 11), out=(4, 6))    # downsampling
    resize_case("bilinear_resize_x16", 3, (1, 4, 3, 4), scale_factor=16)  # DeepLab's x16, source scale 1/16
    cross_entropy_case("pixel_cross_entropy", 4, 2, 5, 6, 7)


if __name__ == "__main__":
    main()
