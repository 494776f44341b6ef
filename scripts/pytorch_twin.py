#!/usr/bin/env python3
"""The PyTorch training twin of the synthetic classifier (issue 30, part 1).

A reference for comparison only: the project never needs Python. `dcn-bench dump-training` runs
the first steps of a classification config exactly as `dcn-train` does and dumps the step-0
weights, every step's batch, the gradients of chosen steps and per step the loss, the learning
rate, each gradient's norm and the deformable layers' offset statistics. This script builds the
same network from torch and torchvision.ops.deform_conv2d (DCNv1: offsets only; DCNv2: the
offset conv's last third of channels through a sigmoid is the modulation), loads our step-0
weights, trains on our batches with the same recipe (SGD with momentum, weight decay per
parameter kind, learning-rate multipliers, warm-up, cosine or step schedule, label smoothing),
and compares:

- step 1: the loss and every parameter's gradient (relative error ||ours - torch|| / ||torch||);
- every step: the loss, each gradient's norm and each deformable layer's mean |offset| and mean
  modulation;

and writes the numbers as JSON and the curves as one SVG (one column per dump).

    .build/release/dcn-bench dump-training --config configs/synth_cls/dcnv2.yaml \\
        --set data.root=data/synth-cls --steps 300 --out /tmp/twin/dcnv2
    python scripts/pytorch_twin.py regular=/tmp/twin/regular dcnv2=/tmp/twin/dcnv2 --json twin.json --svg twin.svg

The twin computes in float64 by default (`--dtype float32` for PyTorch's usual precision), so
that the step-1 differences are ours. A float32 rounding can land on the other side of a kink (a
max-pool near-tie, a ReLU input within 1e-6 of 0) and change one gradient by up to a few 1e-2
(a valid subgradient, not an error): the step-1 report tries the stem pool's near-ties.

`--check-steps K,...` (with a dump made with `--gradient-steps K,...`) recomputes those steps from
our weights before each, so a gradient check can be made at any point of a run, however far the
free-running curves have separated. Needs torch, torchvision, numpy and matplotlib (the plot).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d


# ----------------------------------------------------------------------------- safetensors

def read_safetensors(path):
    """All tensors of a safetensors file as numpy arrays (F32, F64, I64)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=types[e["dtype"]]).reshape(e["shape"])
    return out


# ----------------------------------------------------------------------------- the network

def norm_layer(kind, channels, groups):
    if kind == "gn":
        return torch.nn.GroupNorm(groups, channels, eps=1e-5)
    if kind == "bn":
        return torch.nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
    raise SystemExit(f"norm {kind}: the twin covers gn and bn")


class Weight(torch.nn.Module):
    """Holds a deformable conv's main weight so that its name is `<block>.conv2.weight`."""

    def __init__(self, shape):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(shape))


class Bottleneck(torch.nn.Module):
    """torchvision's bottleneck (stride in the 3x3 conv); a deformable 3x3 conv reads its offsets
    (and modulation) from `conv2_offset`, a 3x3 conv of the block's 3x3 input."""

    def __init__(self, cin, planes, stride, dilation, conv, norm, groups, offset_groups):
        super().__init__()
        out = planes * 4
        self.kind, self.stride, self.dilation, self.offset_groups = conv, stride, dilation, offset_groups
        self.conv1 = torch.nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = norm_layer(norm, planes, groups)
        if conv == "regular":
            self.conv2 = torch.nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        else:
            self.conv2 = Weight((planes, planes, 3, 3))
            per_tap = 3 if conv == "mdconv" else 2
            self.conv2_offset = torch.nn.Conv2d(planes, per_tap * offset_groups * 9, 3, stride, dilation, dilation, bias=True)
        self.bn2 = norm_layer(norm, planes, groups)
        self.conv3 = torch.nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = norm_layer(norm, out, groups)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, out, 1, stride, bias=False), norm_layer(norm, out, groups))
        self.last_offsets = None

    def spatial(self, h):
        if self.kind == "regular":
            return self.conv2(h)
        raw = self.conv2_offset(h)
        taps = self.offset_groups * 9
        offset, mask = raw, None
        if self.kind == "mdconv":
            offset, mask = raw[:, : 2 * taps], torch.sigmoid(raw[:, 2 * taps:])
        self.last_offsets = (offset.detach(), None if mask is None else mask.detach())
        return deform_conv2d(h, offset, self.conv2.weight, None, (self.stride, self.stride),
                             (self.dilation, self.dilation), (self.dilation, self.dilation), mask)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.spatial(h)))
        h = self.bn3(self.conv3(h))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class Classifier(torch.nn.Module):
    """The synthetic classifier: ResNet stem, bottleneck stages res2..res5, global pooling, fc."""

    def __init__(self, r):
        super().__init__()
        norm, groups = r["norm"], r["gn_groups"]
        self.conv1 = torch.nn.Conv2d(3, r["stem_width"], 7, 2, 3, bias=False)
        self.bn1 = norm_layer(norm, r["stem_width"], groups)
        cin = r["stem_width"]
        for s in range(4):
            stage = s + 2
            planes = r["stage_planes"][s]
            first_stride = 1 if s == 0 else (1 if s == 3 and r["res5_dilation"] == 2 else 2)
            dilation = r["res5_dilation"] if s == 3 else 1
            conv = r["conv_type"] if stage in r["deformable_stages"] else "regular"
            blocks = []
            for b in range(r["layers"][s]):
                blocks.append(Bottleneck(cin, planes, first_stride if b == 0 else 1, dilation, conv, norm, groups, r["offset_groups"]))
                cin = planes * 4
            setattr(self, f"layer{s + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Linear(cin, r["classes"])

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(4):
            h = getattr(self, f"layer{s + 1}")(h)
        return self.fc(h.mean(dim=(2, 3)))

    def deformable_blocks(self):
        """(our layer name, block) of every deformable 3x3 conv, in network order."""
        out = []
        for s in range(4):
            for b, block in enumerate(getattr(self, f"layer{s + 1}")):
                if block.kind != "regular":
                    out.append((f"layer{s + 1}.{b}.conv2", block))
        return out


# ----------------------------------------------------------------------------- the recipe

def decays_and_mults(model, r):
    """Each trainable parameter's weight decay and learning-rate multiplier by dcn-train's rules:
    norm weights and biases take weight_decay_norm, conv/linear biases weight_decay_bias (else
    weight_decay), everything else weight_decay; offset branches learn at offset_lr_mult."""
    norm_params = set()
    for m in model.modules():
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
            norm_params |= {id(p) for p in m.parameters(recurse=False)}
    rows = {}
    for name, p in model.named_parameters():
        if id(p) in norm_params:
            wd = r["weight_decay_norm"]
        elif name.endswith(".bias"):
            wd = r["weight_decay_bias"] if r["weight_decay_bias"] is not None else r["weight_decay"]
        else:
            wd = r["weight_decay"]
        mult = r["offset_lr_mult"] if "_offset." in name else 1.0
        rows[name] = (wd, mult)
    return rows


def learning_rate(r, it):
    """detectron2's WarmupCosineLR / WarmupMultiStepLR at iteration `it` (0-based)."""
    factor = 1.0
    if it < r["warmup_iters"]:
        alpha = it / r["warmup_iters"]
        factor = r["warmup_factor"] * (1 - alpha) + alpha
    if r["lr_schedule"] == "cosine":
        t = min(it, r["max_iter"]) / max(1, r["max_iter"])
        return r["base_lr"] * factor * 0.5 * (1 + math.cos(math.pi * t))
    decays = sum(1 for s in r["lr_steps"] if s <= it)
    return r["base_lr"] * factor * r["gamma"] ** decays


# ----------------------------------------------------------------------------- one dump

def relative(a, b):
    """||a - b|| / ||b|| (0 when both are 0)."""
    d = float(np.linalg.norm((a - b).ravel()))
    n = float(np.linalg.norm(b.ravel()))
    return 0.0 if d == 0 else d / max(n, 1e-30)


def run_dump(folder, steps, dtype, log):
    recipe = json.load(open(os.path.join(folder, "recipe.json")))
    ours_params = {p["name"]: p for p in json.load(open(os.path.join(folder, "parameters.json")))}
    ours_steps = [json.loads(line) for line in open(os.path.join(folder, "steps.jsonl"))]
    steps = min(steps or len(ours_steps), len(ours_steps))
    torch.manual_seed(0)
    model = Classifier(recipe).to(dtype)
    # Our step-0 weights and buffers, under the same names.
    weights = read_safetensors(os.path.join(folder, "weights_step0.safetensors"))
    state = model.state_dict()
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    unused = [k for k in weights if k not in state]
    if missing or unused:
        raise SystemExit(f"{folder}: the twin's tensors differ from the dump's: missing {missing}, unused {unused}")
    model.load_state_dict({k: torch.from_numpy(weights[k].copy()).to(dtype) if k in weights else v for k, v in state.items()})
    model.train()

    # The recipe, checked against what our optimiser applies to each parameter.
    rules = decays_and_mults(model, recipe)
    recipe_problems = []
    for name, (wd, mult) in rules.items():
        o = ours_params[name]
        if not o["trainable"] or abs(o["weight_decay"] - wd) > 1e-12 or abs(o["lr_mult"] - mult) > 1e-6:
            recipe_problems.append(f"{name}: ours wd {o['weight_decay']} x{o['lr_mult']}, twin wd {wd} x{mult}")
    groups = [{"params": [p], "weight_decay": rules[n][0], "mult": rules[n][1], "name": n} for n, p in model.named_parameters()]
    opt = torch.optim.SGD(groups, lr=recipe["base_lr"], momentum=recipe["momentum"])
    smoothing = recipe["label_smoothing"]

    result = {"folder": folder, "config": recipe["config"], "recipe": recipe, "dtype": str(dtype).replace("torch.", ""),
              "recipe_problems": recipe_problems, "steps": steps,
              "ours": {"loss": [], "lr": [], "offsets": {}}, "torch": {"loss": [], "lr": [], "offsets": {}},
              "grad_norm_relative": {}}
    layers = [name for name, _ in model.deformable_blocks()]
    for side in ("ours", "torch"):
        for name in layers:
            result[side]["offsets"][name] = {"mean_abs_offset": [], "mask_mean": []}
    t0 = time.time()
    for step in range(1, steps + 1):
        batch = read_safetensors(os.path.join(folder, f"batches/step_{step:04d}.safetensors"))
        x = torch.from_numpy(batch["images"].copy()).to(dtype)
        y = torch.from_numpy(batch["labels"].copy())
        lr = learning_rate(recipe, step - 1)
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        opt.zero_grad(set_to_none=False)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        loss.backward()
        o = ours_steps[step - 1]
        result["ours"]["loss"].append(o["loss"])
        result["ours"]["lr"].append(o["lr"])
        result["torch"]["loss"].append(float(loss))
        result["torch"]["lr"].append(lr)
        for name, block in model.deformable_blocks():
            off, mask = block.last_offsets
            t = result["torch"]["offsets"][name]
            t["mean_abs_offset"].append(float(off.abs().mean()))
            t["mask_mean"].append(None if mask is None else float(mask.mean()))
            ob = o["offsets"].get(name, {})
            u = result["ours"]["offsets"][name]
            u["mean_abs_offset"].append(ob.get("mean_abs_offset"))
            u["mask_mean"].append(ob.get("mask_mean"))
        for name, p in model.named_parameters():
            tn = float(p.grad.norm())
            on = o["grad_norms"][name]
            result["grad_norm_relative"].setdefault(name, []).append(abs(on - tn) / max(tn, 1e-30))
        if step == 1:
            result["step1"] = compare_step1(folder, model, float(loss), o["loss"])
            result["step1"]["stem_pool_near_ties"] = stem_pool_near_ties(folder, model, x, y, smoothing)
            s1 = result["step1"]
            log(f"{recipe['config']}: step 1 loss ours {o['loss']:.7f} torch {float(loss):.7f} (relative {s1['loss_relative']:.2e}); "
                f"worst gradient relative error {s1['worst'][0][1]:.2e} ({s1['worst'][0][0]})")
        opt.step()
        if step % 50 == 0 or step == steps:
            log(f"  step {step}: loss ours {o['loss']:.4f} torch {float(loss):.4f} lr {lr:.5f} ({time.time() - t0:.0f} s)")
    lr_err = max(abs(a - b) / max(b, 1e-30) for a, b in zip(result["ours"]["lr"], result["torch"]["lr"]))
    result["lr_max_relative"] = lr_err
    final = os.path.join(folder, f"weights_step{steps:04d}.safetensors")
    if os.path.exists(final):
        ours_final = read_safetensors(final)
        state = model.state_dict()
        result["final_weights_relative"] = {k: relative(ours_final[k].astype(np.float64), state[k].double().numpy())
                                            for k in ours_final if k in state}
    return result


def compare_step1(folder, model, torch_loss, ours_loss):
    """Step 1: the loss and every gradient, relative to PyTorch's."""
    path = os.path.join(folder, "gradients_step0001.safetensors")
    ours = read_safetensors(path)
    rows = []
    for name, p in model.named_parameters():
        g = p.grad.double().numpy()
        o = ours[name].astype(np.float64)
        rows.append((name, relative(o, g), float(np.abs(o - g).max()), float(np.linalg.norm(g.ravel()))))
    rows.sort(key=lambda r: -r[1])
    return {"loss_ours": ours_loss, "loss_torch": torch_loss, "loss_relative": abs(ours_loss - torch_loss) / abs(torch_loss),
            "worst": rows[:12], "all": {r[0]: r[1] for r in rows}, "max_relative": rows[0][1]}


def stem_pool_near_ties(folder, model, x, y, smoothing, gap=1e-5):
    """The stem's 3x3 max pool at step 1 where its two largest inputs differ by at most `gap`
    (relative): float32 rounding may pick the other one, a different but equally valid subgradient
    at a kink that changes conv1's gradient alone. Returns their count, conv1's relative error
    against ours with PyTorch's picks, and the smallest error with one of them routed to its second
    largest input instead (and that window's gap)."""
    import copy
    ours = read_safetensors(os.path.join(folder, "gradients_step0001.safetensors"))["conv1.weight"].astype(np.float64)

    def conv1_error(flip):
        twin = copy.deepcopy(model)
        twin.zero_grad()
        h0 = F.relu(twin.bn1(twin.conv1(x)))
        n, c, hh, ww = h0.shape
        cols = F.unfold(F.pad(h0, (1, 1, 1, 1), value=float("-inf")), 3, stride=2).view(n, c, 9, -1)
        top = cols.detach().topk(2, dim=2)
        rel = (top.values[:, :, 0] - top.values[:, :, 1]) / top.values[:, :, 0].abs().clamp_min(1e-30)
        near = ((rel <= gap) & (top.values[:, :, 0] > 0)).nonzero()
        mask = torch.zeros(rel.shape, dtype=torch.bool)
        if flip is not None:
            mask[tuple(near[flip])] = True
        choice = torch.where(mask, top.indices[:, :, 1], top.indices[:, :, 0])
        h = cols.gather(2, choice.unsqueeze(2)).view(n, c, (hh + 1) // 2, (ww + 1) // 2)
        for s in range(4):
            h = getattr(twin, f"layer{s + 1}")(h)
        F.cross_entropy(twin.fc(h.mean(dim=(2, 3))), y, label_smoothing=smoothing).backward()
        window_gap = None if flip is None else float(rel[tuple(near[flip])])
        return relative(ours, twin.conv1.weight.grad.double().numpy()), len(near), window_gap

    base, count, _ = conv1_error(None)
    best, best_gap = base, None
    for i in range(min(count, 40)):
        e, _, g = conv1_error(i)
        if e < best:
            best, best_gap = e, g
    return {"windows": count, "gap": gap, "conv1_relative_torch_choice": base,
            "conv1_relative_best_single_flip": best, "flipped_window_gap": best_gap}


def check_step(folder, step, dtype):
    """Recomputes our step `step` from our weights before it (weights_step{step-1}) and its batch:
    the loss and every gradient against ours (a check anywhere in a run, e.g. while the offsets run
    away, independent of how far the two trajectories have separated)."""
    recipe = json.load(open(os.path.join(folder, "recipe.json")))
    model = Classifier(recipe).to(dtype)
    weights = read_safetensors(os.path.join(folder, f"weights_step{step - 1:04d}.safetensors" if step > 1 else "weights_step0.safetensors"))
    state = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(weights[k].copy()).to(dtype) if k in weights else v for k, v in state.items()})
    model.train()
    batch = read_safetensors(os.path.join(folder, f"batches/step_{step:04d}.safetensors"))
    x = torch.from_numpy(batch["images"].copy()).to(dtype)
    y = torch.from_numpy(batch["labels"].copy())
    loss = F.cross_entropy(model(x), y, label_smoothing=recipe["label_smoothing"])
    loss.backward()
    ours_loss = json.loads(open(os.path.join(folder, "steps.jsonl")).readlines()[step - 1])["loss"]
    ours = read_safetensors(os.path.join(folder, f"gradients_step{step:04d}.safetensors"))
    rows = sorted(((relative(ours[n].astype(np.float64), p.grad.double().numpy()), n) for n, p in model.named_parameters()), reverse=True)
    offsets = {name: float(block.last_offsets[0].abs().mean()) for name, block in model.deformable_blocks()}
    return {"step": step, "loss_ours": ours_loss, "loss_torch": float(loss), "loss_relative": abs(ours_loss - float(loss)) / float(loss),
            "worst": rows[:5], "mean_abs_offset": offsets}


# ----------------------------------------------------------------------------- the plot

def smooth(ys, k=10):
    """Running mean over the last k steps."""
    out, acc = [], []
    for v in ys:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def write_svg(results, path):
    """One column per dump: the loss (10-step running mean; ours solid, PyTorch dashed) and each
    deformable layer's mean |offset| in its input pixels (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.fonttype"] = "none"
    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.6), squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    for c, r in enumerate(results):
        title = r.get("label", r["config"])
        ax = axes[0][c]
        # Every other step keeps the SVG small; the curves are running means anyway.
        steps = list(range(1, len(r["ours"]["loss"]) + 1))[::2]
        ax.plot(steps, smooth(r["ours"]["loss"])[::2], "-", color="tab:blue", lw=1.2, label="ours")
        ax.plot(steps, smooth(r["torch"]["loss"])[::2], "--", color="tab:red", lw=1.2, label="PyTorch")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0.8, 3.6)
        ax.grid(alpha=0.3)
        if c == 0:
            ax.set_ylabel("training loss (10-step mean)")
            ax.legend(fontsize=8)
        ax = axes[1][c]
        layers = list(r["ours"]["offsets"])
        for k, name in enumerate(layers):
            stage = f"res{int(name[5]) + 1}"
            colour = colours[k % len(colours)]
            o = [v if v and v > 0 else float("nan") for v in r["ours"]["offsets"][name]["mean_abs_offset"]][::2]
            t = [v if v and v > 0 else float("nan") for v in r["torch"]["offsets"][name]["mean_abs_offset"]][::2]
            ax.plot(steps, o, "-", color=colour, lw=1.2, label=f"{stage} ours")
            ax.plot(steps, t, "--", color=colour, lw=1.2, label=f"{stage} PyTorch")
        if layers:
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no deformable layers", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if c == 0:
            ax.set_ylabel("mean |offset| (input pixels)")
    fig.suptitle("From the same step-0 weights and batches: ours (solid) and the PyTorch twin (dashed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    if path.endswith(".svg"):
        # Path coordinates to 0.1 px: a third of the file, no visible change.
        import re
        with open(path) as f:
            text = f.read()
        text = re.sub(r' d="[^"]*"', lambda m: re.sub(r"(\d+\.\d)\d+", r"\1", m.group(0)), text)
        with open(path, "w") as f:
            f.write(text)
        fig.savefig(path[:-4] + ".png", dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="+", help="folders written by dcn-bench dump-training (LABEL=FOLDER names the column)")
    parser.add_argument("--steps", type=int, default=0, help="steps to replay (default: all dumped)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="twin.json")
    parser.add_argument("--svg", default="twin.svg")
    parser.add_argument("--replot", action="store_true", help="redraw --svg from the --json of an earlier run (the dumps are its JSON files)")
    parser.add_argument("--check-steps", default="", help="only recompute these steps (comma-separated) from our weights before each "
                        "(dump with --gradient-steps listing them) and compare the loss and every gradient")
    args = parser.parse_args()
    if args.check_steps:
        torch.set_num_threads(args.threads)
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        out = []
        for d in args.dumps:
            folder = d.rpartition("=")[2]
            for k in [int(v) for v in args.check_steps.split(",")]:
                c = check_step(folder, k, dtype)
                out.append(dict(c, folder=folder))
                offs = ", ".join(f"{n.split('.')[0]} {v:.3g}" for n, v in c["mean_abs_offset"].items())
                print(f"{folder} step {k}: loss ours {c['loss_ours']:.6f} torch {c['loss_torch']:.6f} (relative {c['loss_relative']:.1e}); "
                      f"worst gradient {c['worst'][0][1]} {c['worst'][0][0]:.2e}, next {c['worst'][1][1]} {c['worst'][1][0]:.2e}; mean |offset| {offs}")
        with open(args.json, "w") as f:
            json.dump(out, f)
        return
    if args.replot:
        results = [r for path in args.dumps for r in json.load(open(path))]
        write_svg(results, args.svg)
        print(f"wrote {args.svg}")
        return
    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    results = []
    for d in args.dumps:
        label, _, folder = d.rpartition("=") if "=" in d else ("", "", d)
        r = run_dump(folder, args.steps, dtype, lambda s: print(s, flush=True))
        if label:
            r["label"] = label
        for p in r["recipe_problems"]:
            print("  recipe differs:", p)
        t = r["step1"]["stem_pool_near_ties"]
        print(f"  stem max pool: {t['windows']} window(s) whose two largest inputs differ by <= {t['gap']:.0e} relative; conv1's gradient "
              f"error {t['conv1_relative_torch_choice']:.2e} with PyTorch's picks, {t['conv1_relative_best_single_flip']:.2e} with one "
              f"(gap {t['flipped_window_gap']}) routed to its second largest input")
        print(f"  worst step-1 gradients (relative error, max abs error, ||grad||):")
        for name, rel, mx, n in r["step1"]["worst"][:6]:
            print(f"    {name:40s} {rel:.2e}  {mx:.2e}  {n:.3e}")
        results.append(r)
    with open(args.json, "w") as f:
        json.dump(results, f)
    write_svg(results, args.svg)
    print(f"wrote {args.json} and {args.svg}")
    ok = all(r["step1"]["max_relative"] <= 1e-4 and r["step1"]["loss_relative"] <= 1e-4 and not r["recipe_problems"] for r in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
