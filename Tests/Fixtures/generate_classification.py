"""Reference data for the classification transforms and a tiny ImageFolder tree of JPEGs.

torchvision's RandomResizedCrop.get_params with recorded random draws (so the Swift test replays
them), the crop resized with PIL's bilinear filter as torchvision does for PIL images, and the
evaluation transform Resize + CenterCrop. Run with torch, torchvision and safetensors installed:
    python Tests/Fixtures/generate_classification.py
"""
import json, math, os
import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "classification")
os.makedirs(OUT, exist_ok=True)


def pattern(width, height, seed):
    """A smooth colour pattern with edges (so resampling differences would show)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3), rng.uniform(0, 6)
        img[..., c] = 127 + 100 * np.sin(fx * x + ph) * np.cos(fy * y)
    img[(x // 9 + y // 7) % 5 == 0] = 255 * rng.uniform(size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def replay_draws(height, width, scale, ratio):
    """torchvision's get_params, recording every random value it draws (same generator calls)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    draws = []
    for _ in range(10):
        u_scale = torch.empty(1).uniform_(scale[0], scale[1]).item()
        u_log = torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item()
        draws += [u_scale, u_log]
        target_area = area * u_scale
        aspect_ratio = torch.exp(torch.tensor(u_log)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            draws += [i, j]
            return draws
    return draws


cases = []
tensors = {}
sizes = [(131, 97), (80, 150), (64, 64), (200, 120)]
settings = [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (3.0, 4.0)), ((0.9, 1.0), (0.2, 0.3))]
crop_size, resize_size, eval_crop = 48, 56, 48
for k, (w, h) in enumerate(sizes):
    img = pattern(w, h, k)
    name = f"pattern_{k}.png"
    img.save(os.path.join(OUT, name))
    for s, (scale, ratio) in enumerate(settings):
        for draw in range(2):
            seed = 1000 * k + 10 * s + draw
            torch.manual_seed(seed)
            i, j, hh, ww = T.RandomResizedCrop.get_params(img, list(scale), list(ratio))
            torch.manual_seed(seed)
            draws = replay_draws(h, w, scale, ratio)
            out = F.resized_crop(img, i, j, hh, ww, [crop_size, crop_size], interpolation=T.InterpolationMode.BILINEAR)
            key = f"train_{k}_{s}_{draw}"
            tensors[key] = np.asarray(out, dtype=np.uint8)
            cases.append({"image": name, "key": key, "scale": list(scale), "ratio": list(ratio), "draws": draws,
                          "box": [i, j, hh, ww]})
    ev = T.Compose([T.Resize(resize_size), T.CenterCrop(eval_crop)])(img)
    tensors[f"eval_{k}"] = np.asarray(ev, dtype=np.uint8)

from safetensors.numpy import save_file
save_file(tensors, os.path.join(OUT, "transforms.safetensors"))
with open(os.path.join(OUT, "transforms.json"), "w") as f:
    json.dump({"crop_size": crop_size, "resize_size": resize_size, "eval_crop": eval_crop, "images": len(sizes),
               "cases": cases, "torchvision": __import__("torchvision").__version__}, f, indent=1)

# A tiny ImageFolder tree of JPEGs: three classes of simple shapes.
for split, count in [("train", 4), ("val", 2)]:
    for c, cls in enumerate(["disc", "bar", "cross"]):
        folder = os.path.join(OUT, "imagefolder", split, cls)
        os.makedirs(folder, exist_ok=True)
        for n in range(count):
            rng = np.random.default_rng(100 * c + n + (0 if split == "train" else 50))
            size = int(rng.integers(36, 52))
            y, x = np.mgrid[0:size, 0:size]
            cx, cy, r = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4), size / 3
            if cls == "disc":
                m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
            elif cls == "bar":
                m = np.abs(y - cy) < r / 3
            else:
                m = (np.abs(y - cy) < r / 4) | (np.abs(x - cx) < r / 4)
            img = np.full((size, size, 3), 40, np.uint8)
            img[m] = [220, 180, 60]
            Image.fromarray(img).save(os.path.join(folder, f"{n}.jpg"), quality=90)
print("wrote", len(cases), "crop cases and", len(sizes), "evaluation cases to", OUT)
