#!/usr/bin/env python3
"""Regenerates the layer and loss fixtures in Tests/Fixtures/ops (same format as
../shared/fixtures: see its README).

Every expected value comes from PyTorch (torch.nn.functional) computed in float64 from
float32 inputs; gradients are those of sum(output * grad_output) by autograd. Frozen batch
norm follows torchvision's FrozenBatchNorm2d formula (scale = w * rsqrt(rv + eps),
shift = b - rm * scale), written out here so torchvision is not needed.

Needs: torch, safetensors, numpy.   Run: python3 generate_layers.py
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
        if v.dim() == 0:
            v = v.reshape(1)
        if k.startswith("expected_") or (k.startswith("grad_") and k != "grad_output"):
            out[k] = v.double()
        elif v.dtype in (torch.int64, torch.int32):
            out[k] = v.to(torch.int64)
        else:
            out[k] = v.float()
    meta = {k: str(v) for k, v in meta.items()}
    meta.setdefault("reference", "torch %s (float64)" % torch.__version__)
    path = os.path.join(os.environ.get("FIXTURE_OUT", os.path.join(HERE, "ops")), name + ".safetensors")
    save_file(out, path, metadata=meta)
    print("wrote", name, os.path.getsize(path), "bytes", {k: tuple(v.shape) for k, v in out.items()})


def gen(seed):
    return torch.Generator().manual_seed(seed)


def leaf(t):
    return f32(t).requires_grad_()


# ---------------------------------------------------------------- norms
def frozen_bn_case(name, seed, shape, eps=1e-5):
    g = gen(seed)
    c = shape[1]
    x = leaf(torch.randn(shape, generator=g) * 2 + 0.5)
    w = f32(torch.randn(c, generator=g))
    b = f32(torch.randn(c, generator=g))
    rm = f32(torch.randn(c, generator=g))
    rv = f32(torch.rand(c, generator=g) * 2 + 0.1)
    scale = w * (rv + eps).rsqrt()
    shift = b - rm * scale
    y = x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    save(name, {"input": x, "weight": w, "bias": b, "running_mean": rm, "running_var": rv,
                "expected_output": y, "grad_output": gy, "grad_input": x.grad},
         dict(op="frozen_batch_norm", eps=eps,
              reference="torchvision FrozenBatchNorm2d formula in torch %s (float64)" % torch.__version__))


def bn_case(name, seed, shape, training, eps=1e-5, momentum=0.1):
    g = gen(seed)
    c = shape[1]
    x = leaf(torch.randn(shape, generator=g) * 1.5 + 0.7)
    w = leaf(torch.randn(c, generator=g))
    b = leaf(torch.randn(c, generator=g))
    rm = f32(torch.randn(c, generator=g))
    rv = f32(torch.rand(c, generator=g) * 2 + 0.1)
    rm_new, rv_new = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm_new, rv_new, w, b, training=training, momentum=momentum, eps=eps)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    t = {"input": x, "weight": w, "bias": b, "running_mean": rm, "running_var": rv,
         "expected_output": y, "grad_output": gy, "grad_input": x.grad,
         "grad_weight": w.grad, "grad_bias": b.grad}
    if training:
        t.update(expected_running_mean=rm_new, expected_running_var=rv_new)
    save(name, t, dict(op="batch_norm", training=int(training), eps=eps, momentum=momentum,
                       reference="torch.nn.functional.batch_norm %s (float64)" % torch.__version__))


def gn_case(name, seed, shape, groups, eps=1e-5):
    g = gen(seed)
    c = shape[1]
    x = leaf(torch.randn(shape, generator=g) * 1.3 - 0.4)
    w = leaf(torch.randn(c, generator=g))
    b = leaf(torch.randn(c, generator=g))
    y = F.group_norm(x, groups, w, b, eps)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    save(name, {"input": x, "weight": w, "bias": b, "expected_output": y, "grad_output": gy,
                "grad_input": x.grad, "grad_weight": w.grad, "grad_bias": b.grad},
         dict(op="group_norm", groups=groups, eps=eps,
              reference="torch.nn.functional.group_norm %s (float64)" % torch.__version__))


# ---------------------------------------------------------------- activations
def activation_case(name, seed, op, fn):
    g = gen(seed)
    x = leaf(torch.randn(2, 3, 4, 5, generator=g) * 3)
    y = fn(x)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    save(name, {"input": x, "expected_output": y, "grad_output": gy, "grad_input": x.grad},
         dict(op=op, reference="torch.%s %s (float64)" % (op, torch.__version__)))


# ---------------------------------------------------------------- pooling
def max_pool_case(name, seed, shape, kernel, stride, pad):
    g = gen(seed)
    # Small integers (many ties inside windows) mixed with continuous values.
    ties = torch.randint(-2, 3, shape, generator=g).double()
    cont = torch.randn(shape, generator=g)
    pick = torch.rand(shape, generator=g) < 0.5
    x = leaf(torch.where(pick, ties, cont))
    y = F.max_pool2d(x, kernel, stride, pad)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    save(name, {"input": x, "expected_output": y, "grad_output": gy, "grad_input": x.grad},
         dict(op="max_pool2d", kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0],
              stride_w=stride[1], pad_h=pad[0], pad_w=pad[1],
              reference="torch.nn.functional.max_pool2d %s (float64)" % torch.__version__))


def gap_case(name, seed, shape):
    g = gen(seed)
    x = leaf(torch.randn(shape, generator=g) + 0.3)
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    save(name, {"input": x, "expected_output": y, "grad_output": gy, "grad_input": x.grad},
         dict(op="global_avg_pool",
              reference="torch.nn.functional.adaptive_avg_pool2d(x, 1) %s (float64)" % torch.__version__))


# ---------------------------------------------------------------- linear
def linear_case(name, seed, n, fin, fout, bias=True):
    g = gen(seed)
    x = leaf(torch.randn(n, fin, generator=g))
    w = leaf(torch.randn(fout, fin, generator=g) * 0.3)
    b = leaf(torch.randn(fout, generator=g)) if bias else None
    y = F.linear(x, w, b)
    gy = f32(torch.randn(y.shape, generator=g))
    y.backward(gy)
    t = {"input": x, "weight": w, "expected_output": y, "grad_output": gy,
         "grad_input": x.grad, "grad_weight": w.grad}
    if bias:
        t.update(bias=b, grad_bias=b.grad)
    save(name, t, dict(op="linear", reference="torch.nn.functional.linear %s (float64)" % torch.__version__))


# ---------------------------------------------------------------- losses
def scalar_grad(g):
    return f32(torch.rand((), generator=g) + 0.5)


def ce_case(name, seed, n, c):
    g = gen(seed)
    x = leaf(torch.randn(n, c, generator=g) * 3)
    x.data[0] += 40  # large logits exercise the shifted log-sum-exp
    labels = torch.randint(0, c, (n,), generator=g)
    labels[1] = -1
    labels[n - 2] = -1
    loss = F.cross_entropy(x, labels, ignore_index=-1, reduction="mean")
    go = scalar_grad(g)
    (loss * go).backward()
    save(name, {"input": x, "labels": labels, "expected_loss": loss, "grad_output": go, "grad_input": x.grad},
         dict(op="softmax_cross_entropy", ignore_label=-1,
              reference="torch.nn.functional.cross_entropy(ignore_index=-1) %s (float64)" % torch.__version__))


def bce_case(name, seed, shape, reduction, weighted):
    g = gen(seed)
    x = leaf(torch.randn(shape, generator=g) * 4)
    t = (torch.rand(shape, generator=g) < 0.4).double()
    soft = torch.rand(shape, generator=g) < 0.15
    t = torch.where(soft, f32(torch.rand(shape, generator=g)), t)
    ignored = torch.rand(shape, generator=g) < 0.2
    t = torch.where(ignored, torch.full_like(t, -1.0), t)
    valid = (t != -1).double()
    w = f32(torch.rand(shape, generator=g) + 0.5) if weighted else None
    ew = valid * (w if weighted else 1.0)
    loss = F.binary_cross_entropy_with_logits(x, t.clamp(min=0), weight=ew, reduction="sum")
    if reduction == "mean":
        loss = loss / valid.sum()
    go = scalar_grad(g)
    (loss * go).backward()
    tensors = {"input": x, "target": t, "expected_loss": loss, "grad_output": go, "grad_input": x.grad}
    if weighted:
        tensors["weight"] = w
    save(name, tensors, dict(op="sigmoid_bce", reduction=reduction, ignore_target=-1,
                             reference="torch.nn.functional.binary_cross_entropy_with_logits(weight=w*valid, "
                                       "reduction='sum') [/ valid count for mean] %s (float64)" % torch.__version__))


def smooth_l1_case(name, seed, shape, beta):
    g = gen(seed)
    beta = float(f32(torch.tensor(beta)))  # the float32 value the Swift side reads
    x = leaf(torch.randn(shape, generator=g) * 0.3)
    t = f32(torch.randn(shape, generator=g) * 0.3)
    loss = F.smooth_l1_loss(x, t, reduction="sum", beta=beta)
    go = scalar_grad(g)
    (loss * go).backward()
    save(name, {"input": x, "target": t, "expected_loss": loss, "grad_output": go, "grad_input": x.grad},
         dict(op="smooth_l1", beta=repr(beta),
              reference="torch.nn.functional.smooth_l1_loss(reduction='sum') %s (float64)" % torch.__version__))


def cosine_case(name, seed, n, d, eps=1e-8):
    g = gen(seed)
    a = leaf(torch.randn(n, d, generator=g))
    b = f32(torch.randn(n, d, generator=g) + 0.8 * a.detach())
    b[0] = f32(a.detach()[0] * 2.5)  # a parallel pair
    b = b.requires_grad_()
    loss = (1 - F.cosine_similarity(a, b, dim=1, eps=eps)).mean()
    go = scalar_grad(g)
    (loss * go).backward()
    save(name, {"a": a, "b": b, "expected_loss": loss, "grad_output": go, "grad_a": a.grad, "grad_b": b.grad},
         dict(op="cosine_mimic", eps=eps,
              reference="1 - torch.nn.functional.cosine_similarity, mean over rows, %s (float64)" % torch.__version__))


def main():
    frozen_bn_case("frozen_batch_norm", 1, (2, 5, 6, 7))
    bn_case("batch_norm_train", 2, (4, 3, 5, 6), training=True)
    bn_case("batch_norm_eval", 3, (2, 4, 5, 3), training=False)
    gn_case("group_norm_g3", 4, (2, 6, 5, 4), groups=3)
    gn_case("group_norm_g1", 5, (3, 4, 3, 5), groups=1)
    activation_case("relu", 6, "relu", torch.relu)
    activation_case("sigmoid", 7, "sigmoid", torch.sigmoid)
    max_pool_case("max_pool2d_3x3_s2_p1", 8, (2, 3, 9, 10), (3, 3), (2, 2), (1, 1))
    max_pool_case("max_pool2d_2x3_s1x2", 9, (1, 2, 7, 8), (2, 3), (1, 2), (1, 0))
    gap_case("global_avg_pool", 10, (2, 4, 5, 6))
    linear_case("linear", 11, 5, 7, 4)
    linear_case("linear_nobias", 12, 3, 6, 8, bias=False)
    ce_case("softmax_cross_entropy", 13, 9, 5)
    bce_case("sigmoid_bce_mean_weighted", 14, (6, 7), "mean", weighted=True)
    bce_case("sigmoid_bce_sum", 15, (5, 8), "sum", weighted=False)
    smooth_l1_case("smooth_l1_beta", 16, (10, 4), 1.0 / 9.0)
    smooth_l1_case("smooth_l1_beta0", 17, (6, 4), 0.0)
    cosine_case("cosine_mimic", 18, 6, 16)


if __name__ == "__main__":
    main()
