#!/usr/bin/env python3
"""Writes the Mask R-CNN mask-geometry fixtures in Tests/Fixtures/masks/ (read by
Tests/DCNEvalTests/MaskGeometryTests.swift):

  polygon_targets.json  detectron2's rasterize_polygons_within_box (PolygonMasks.crop_and_resize):
                        polygons shifted by the box corner, scaled by mask_size / max(side, 0.1),
                        rasterised with pycocotools frPyObjects + merge + decode.
  bitmask_targets.json  detectron2's BitMasks.crop_and_resize: torchvision.ops.roi_align
                        (aligned=True, sampling_ratio=0, spatial_scale=1) of the full 0/1 mask,
                        then >= 0.5. The raw RoIAlign values are stored too.
  paste.json            detectron2's paste_masks_in_image on the CPU (one box at a time,
                        skip_empty=True): F.grid_sample(align_corners=False) of the M x M
                        probabilities at the pixel centres of the box's region, then
                        >= threshold; the region's raw values and pycocotools' RLE of the result.
  rle_encode.json       pycocotools.mask.encode of binary masks and the compressed counts string.

detectron2 itself is not installed: its three functions are written out below with the same
numpy / torch operations in the same dtypes (boxes float32 as detectron2's Boxes tensors,
polygons float64 as PolygonMasks keeps them; NumPy >= 2 scalar rules, so mask_size / h is a
float32 when h is a float32 side >= 0.1).

Layouts in the files: masks and targets are strings of '0'/'1', row-major (index y * width + x);
raw float32 values are base64 of little-endian float32, row-major.

Needs: torch, torchvision, pycocotools, numpy.   Run: python3 generate_masks.py
"""
import base64
import copy
import json
import os

import numpy as np
from importlib.metadata import version
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import roi_align

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "masks")
rng = np.random.RandomState(20240607)


# ------------------------------------------------------------------ helpers
def bits(mask):
    """A 2-D 0/1 array as a row-major string of '0'/'1'."""
    return "".join("1" if v else "0" for v in np.asarray(mask).reshape(-1))


def f32_b64(values):
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode()


def box32(box):
    """A box as detectron2 holds it: float32 (x0, y0, x1, y1)."""
    return torch.tensor(box, dtype=torch.float32)


def box_json(b):
    return [float(v) for v in b.tolist()]  # float32 values, exact as doubles


def encode(mask):
    """pycocotools RLE of an (H, W) 0/1 mask, as detectron2's instances_to_coco_json."""
    rle = mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]
    return rle["counts"].decode("utf-8")


# ------------------------------------------------------------------ detectron2's algorithms
def polygons_to_bitmask(polygons, height, width):
    if len(polygons) == 0:
        return np.zeros((height, width)).astype(bool)
    rles = mask_util.frPyObjects(polygons, height, width)
    rle = mask_util.merge(rles)
    return mask_util.decode(rle).astype(bool)


def rasterize_polygons_within_box(polygons, box, mask_size):
    """box: float32 numpy array (x0, y0, x1, y1); polygons: list of float64 arrays."""
    w, h = box[2] - box[0], box[3] - box[1]
    polygons = copy.deepcopy(polygons)
    for p in polygons:
        p[0::2] = p[0::2] - box[0]
        p[1::2] = p[1::2] - box[1]
    ratio_h = mask_size / max(h, 0.1)
    ratio_w = mask_size / max(w, 0.1)
    if ratio_h == ratio_w:
        for p in polygons:
            p *= ratio_h
    else:
        for p in polygons:
            p[0::2] *= ratio_w
            p[1::2] *= ratio_h
    return polygons_to_bitmask(polygons, mask_size, mask_size)


def bitmask_crop_and_resize(mask, box, mask_size):
    """BitMasks(mask[None]).crop_and_resize(box[None], mask_size) and the raw RoIAlign values."""
    bit = torch.as_tensor(mask, dtype=torch.bool)[None]
    rois = torch.cat([torch.zeros(1, 1), box[None]], dim=1)
    raw = roi_align(bit.to(torch.float32)[:, None], rois, (mask_size, mask_size), 1.0, 0, True).squeeze(1)
    return (raw >= 0.5)[0].numpy(), raw[0].numpy()


def paste_one(probs, box, img_h, img_w, threshold):
    """paste_masks_in_image for one mask on the CPU: _do_paste_mask(skip_empty=True), then
    >= threshold into a zero image. Returns the image mask, the region and its raw values.
    PyTorch's vectorised grid_sample kernel (AVX2 / AVX512 builds) fuses its multiply-adds:
    (g + 1) * M / 2 - 0.5 and the four-corner sum; the raw values carry that rounding."""
    masks = probs[None, None]
    boxes = box[None]
    x0_int, y0_int = torch.clamp(boxes.min(dim=0).values.floor()[:2] - 1, min=0).to(dtype=torch.int32)
    x1_int = torch.clamp(boxes[:, 2].max().ceil() + 1, max=img_w).to(dtype=torch.int32)
    y1_int = torch.clamp(boxes[:, 3].max().ceil() + 1, max=img_h).to(dtype=torch.int32)
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    img_y = torch.arange(y0_int, y1_int, dtype=torch.float32) + 0.5
    img_x = torch.arange(x0_int, x1_int, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    gx = img_x[:, None, :].expand(1, img_y.size(1), img_x.size(1))
    gy = img_y[:, :, None].expand(1, img_y.size(1), img_x.size(1))
    grid = torch.stack([gx, gy], dim=3)
    raw = F.grid_sample(masks, grid.to(masks.dtype), align_corners=False)[:, 0]
    img = torch.zeros(1, img_h, img_w, dtype=torch.bool)
    img[(slice(0, 1), slice(int(y0_int), int(y1_int)), slice(int(x0_int), int(x1_int)))] = raw >= threshold
    region = [int(x0_int), int(y0_int), int(x1_int), int(y1_int)]
    return img[0].numpy(), region, raw[0].numpy()


# ------------------------------------------------------------------ shapes
def random_polygon(cx, cy, r, n):
    """A star-shaped polygon around (cx, cy) with n vertices (float64)."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.3, 1.0, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).reshape(-1)


def image_mask(polys, h, w):
    return polygons_to_bitmask([np.asarray(p, dtype=np.float64) for p in polys], h, w).astype(np.uint8)


def smooth_probabilities(m):
    """M x M float32 probabilities: a sigmoid of a blob plus noise (smooth, with values near 0.5)."""
    yy, xx = np.mgrid[0:m, 0:m].astype(np.float64)
    cx, cy = rng.uniform(0.3, 0.7, 2) * m
    r = rng.uniform(0.25, 0.45) * m
    d = r - np.hypot(xx - cx, yy - cy)
    logits = d / (0.1 * m) + rng.normal(0, 0.8, (m, m))
    return torch.from_numpy(1 / (1 + np.exp(-logits))).to(torch.float32)


# ------------------------------------------------------------------ cases
def polygon_cases():
    P = lambda *v: np.asarray(v, dtype=np.float64)
    tri = P(12.0, 8.0, 30.5, 12.25, 18.75, 27.0)
    square = P(5, 5, 25, 5, 25, 25, 5, 25)
    cases = [
        ("triangle_inside", [tri], [10.0, 6.0, 32.0, 29.0], 28),
        ("triangle_inside_m14", [tri], [10.0, 6.0, 32.0, 29.0], 14),
        ("partly_outside_box", [P(0, 0, 40, 2, 38, 40, 3, 35)], [10.5, 12.25, 30.75, 28.5], 28),
        ("two_parts_overlapping", [square, P(15, 15, 35, 18, 20, 34)], [4.0, 4.0, 36.0, 36.0], 28),
        ("box_crossing_image_border", [P(-6, -3, 14, -1, 12, 15, -4, 12)], [-8.25, -5.5, 10.0, 9.0], 28),
        ("tiny_box_under_1px", [P(10, 10, 10.8, 10.1, 10.4, 10.9)], [10.1, 10.2, 10.7, 10.65], 28),
        ("tiny_box_height_under_0.1", [P(10, 10, 14, 10.02, 12, 10.09)], [10.0, 10.0, 14.0, 10.05], 28),
        ("zero_width_box", [P(10, 10, 14, 10, 12, 14)], [12.0, 10.0, 12.0, 14.0], 28),
        ("side_exactly_0.1", [P(0, 0, 1, 0, 1, 1, 0, 1)], [0.3, 0.3, 0.4, 0.4], 14),
        ("degenerate_collinear", [P(10, 10, 15, 15, 20, 20)], [8.0, 8.0, 22.0, 22.0], 28),
        ("degenerate_single_point", [P(15, 15, 15, 15, 15, 15)], [8.0, 8.0, 22.0, 22.0], 28),
        ("degenerate_repeated_vertex", [P(10, 10, 10, 10, 20, 10, 20, 20, 10, 20)], [8.0, 8.0, 22.0, 22.0], 28),
        ("degenerate_plus_valid", [P(10, 10, 15, 15, 20, 20), P(9, 9, 21, 9, 15, 21)], [8.0, 8.0, 22.0, 22.0], 14),
        ("polygon_outside_box", [P(50, 50, 60, 50, 55, 60)], [0.0, 0.0, 20.0, 20.0], 28),
        ("no_polygons", [], [0.0, 0.0, 20.0, 20.0], 28),
        ("box_inside_polygon", [P(-100, -100, 200, -100, 200, 200, -100, 200)], [3.3, 4.4, 17.7, 12.1], 28),
        ("mask_size_1", [tri], [10.0, 6.0, 32.0, 29.0], 1),
        ("odd_fractions", [P(3.1, 7.7, 29.3, 2.2, 33.9, 31.1, 11.4, 36.6, 1.9, 20.5)], [1.7, 2.1, 34.3, 36.9], 28),
    ]
    for k in range(24):
        m = 28 if k % 2 == 0 else 14
        cx, cy = rng.uniform(10, 90, 2)
        polys = [random_polygon(cx, cy, rng.uniform(3, 30), rng.randint(3, 12)) for _ in range(rng.randint(1, 3))]
        # a proposal around the instance: its extent, each side moved by up to 30% of the size
        xy = np.concatenate(polys).reshape(-1, 2)
        lo, hi = xy.min(0), xy.max(0)
        size = np.maximum(hi - lo, 1.0)
        x0, y0 = lo + rng.uniform(-0.3, 0.3, 2) * size
        x1, y1 = hi + rng.uniform(-0.3, 0.3, 2) * size
        cases.append(("random_%02d" % k, polys, [x0, y0, max(x1, x0 + 0.3), max(y1, y0 + 0.3)], m))
    cases += rounding_sensitive_polygon_cases()
    out = []
    for name, polys, box, m in cases:
        b = box32(box)
        target = rasterize_polygons_within_box([np.asarray(p, dtype=np.float64) for p in polys], b.numpy(), m)
        out.append({"name": name, "polygons": [[float(v) for v in p] for p in polys], "box": box_json(b),
                    "mask_size": m, "target": bits(target)})
    return out


def rounding_sensitive_polygon_cases(count=4):
    """Polygons whose vertices land on pycocotools' rounding points (multiples of 1/5 cell,
    minus 0.1) once moved into the box, kept when the float32 ratio mask_size / side that
    detectron2 computes under NumPy >= 2 rasterises differently from a float64 ratio (NumPy 1):
    these cases pin the float32 rounding."""
    search = np.random.RandomState(5)
    found = []
    while len(found) < count:
        m = 28 if len(found) % 2 == 0 else 14
        lo = search.uniform(0, 50, 2)
        b = box32(lo.tolist() + (lo + search.uniform(1, 60, 2)).tolist()).numpy()
        w, h = b[2] - b[0], b[3] - b[1]
        cells = search.randint(-10, 5 * m + 10, (search.randint(3, 7), 2)) / 5.0 - 0.1
        poly = np.stack([b[0] + cells[:, 0] / (m / w), b[1] + cells[:, 1] / (m / h)], 1).reshape(-1)
        f32 = rasterize_polygons_within_box([poly.copy()], b, m)
        p64 = poly.copy()
        p64[0::2] = (p64[0::2] - b[0]) * (m / float(w))
        p64[1::2] = (p64[1::2] - b[1]) * (m / float(h))
        if (f32 != polygons_to_bitmask([p64], m, m)).any():
            found.append(("float32_ratio_rounding_%d" % len(found), [poly], [float(v) for v in b], m))
    return found


def bitmask_cases():
    H, W = 37, 53
    blob = image_mask([random_polygon(26, 18, 14, 9)], H, W)
    border = image_mask([[-5, -5, 20, -3, 15, 16, -2, 20], [40, 25, 60, 30, 55, 45]], H, W)  # touches left/top/right/bottom
    full = np.ones((H, W), np.uint8)
    empty = np.zeros((H, W), np.uint8)
    thin = np.zeros((H, W), np.uint8); thin[:, 20] = 1; thin[10, :] = 1  # one-pixel lines
    checker = (np.add.outer(np.arange(H), np.arange(W)) % 2).astype(np.uint8)
    tall = image_mask([random_polygon(10, 25, 9, 7)], 50, 20)  # a non-square portrait image
    cases = [
        ("box_inside", blob, [12.0, 5.0, 40.0, 31.0], 28),
        ("box_inside_m14", blob, [12.0, 5.0, 40.0, 31.0], 14),
        ("fractional_box", blob, [11.3, 4.7, 39.2, 30.9], 28),
        ("box_crossing_border", border, [-6.5, -4.25, 22.0, 19.5], 28),
        ("box_crossing_far_border", border, [35.5, 20.25, 60.0, 44.0], 14),
        ("box_outside_image", blob, [60.0, 40.0, 80.0, 55.0], 28),
        ("tiny_box_under_1px", blob, [25.2, 17.1, 25.9, 17.6], 28),
        ("tiny_box_on_edge", blob, [19.95, 12.0, 20.05, 24.0], 14),
        ("zero_width_box", blob, [20.0, 10.0, 20.0, 20.0], 28),
        ("mask_touching_border_whole_image", border, [0.0, 0.0, 53.0, 37.0], 28),
        ("empty_mask", empty, [5.0, 5.0, 30.0, 30.0], 28),
        ("full_mask", full, [-3.0, -3.0, 56.0, 40.0], 28),
        ("thin_lines", thin, [14.5, 4.5, 26.5, 16.5], 14),
        ("checkerboard_half", checker, [3.0, 3.0, 31.0, 31.0], 28),
        ("large_box_grid_3", blob, [0.0, 0.0, 53.0, 37.0], 14),
        ("portrait_image", tall, [1.5, 13.0, 19.5, 38.0], 28),
        ("mask_size_1", blob, [12.0, 5.0, 40.0, 31.0], 1),
    ]
    for k in range(16):
        m = 28 if k % 2 == 0 else 14
        mask = image_mask([random_polygon(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(4, 20), rng.randint(3, 10))], H, W)
        while not mask.any():
            mask = image_mask([random_polygon(W / 2, H / 2, rng.uniform(4, 20), rng.randint(3, 10))], H, W)
        ys, xs = np.nonzero(mask)
        lo = np.array([xs.min(), ys.min()], np.float64)
        hi = np.array([xs.max() + 1, ys.max() + 1], np.float64)
        size = hi - lo
        x0, y0 = lo + rng.uniform(-0.3, 0.3, 2) * size
        x1, y1 = hi + rng.uniform(-0.3, 0.3, 2) * size
        cases.append(("random_%02d" % k, mask, [x0, y0, max(x1, x0 + 0.3), max(y1, y0 + 0.3)], m))
    out = []
    for name, mask, box, m in cases:
        b = box32(box)
        target, raw = bitmask_crop_and_resize(mask, b, m)
        out.append({"name": name, "height": int(mask.shape[0]), "width": int(mask.shape[1]), "mask": bits(mask),
                    "box": box_json(b), "mask_size": m, "target": bits(target), "roi_align": f32_b64(raw)})
    return out


def paste_cases():
    cases = []
    ones28 = torch.ones(28, 28)
    zeros28 = torch.zeros(28, 28)
    disk = lambda m: torch.from_numpy((np.hypot(*np.mgrid[0:m, 0:m] - (m - 1) / 2) < m / 3).astype(np.float32))
    halves = torch.zeros(14, 14); halves[:, 7:] = 1
    cases += [
        ("box_inside", smooth_probabilities(28), [10.0, 8.0, 40.0, 30.0], (45, 70), 0.5),
        ("box_inside_m14", smooth_probabilities(14), [10.0, 8.0, 40.0, 30.0], (45, 70), 0.5),
        ("fractional_box", smooth_probabilities(28), [12.3, 7.6, 33.9, 41.2], (45, 70), 0.5),
        ("box_crossing_left_top", smooth_probabilities(28), [-9.5, -6.25, 18.0, 20.0], (45, 70), 0.5),
        ("box_crossing_right_bottom", smooth_probabilities(28), [55.5, 30.25, 80.0, 52.0], (45, 70), 0.5),
        ("box_touching_border", smooth_probabilities(28), [40.0, 20.0, 70.0, 45.0], (45, 70), 0.5),
        ("whole_image_box", smooth_probabilities(28), [0.0, 0.0, 70.0, 45.0], (45, 70), 0.5),
        ("large_box_wider_than_1.5M", smooth_probabilities(14), [1.0, 2.0, 69.0, 43.0], (45, 70), 0.5),
        ("tiny_box_under_1px", smooth_probabilities(28), [20.2, 10.1, 20.9, 10.8], (45, 70), 0.5),
        ("tiny_box_width_0.05", ones28, [20.0, 10.0, 20.05, 30.0], (45, 70), 0.5),
        ("zero_width_box", ones28, [20.0, 10.0, 20.0, 30.0], (45, 70), 0.5),
        ("all_ones", ones28, [5.5, 6.5, 25.5, 36.5], (45, 70), 0.5),
        ("all_zeros_empty", zeros28, [5.5, 6.5, 25.5, 36.5], (45, 70), 0.5),
        ("binary_disk_ties", disk(28), [10.0, 10.0, 38.0, 38.0], (45, 70), 0.5),
        ("binary_halves_ties_m14", halves, [3.0, 3.0, 31.0, 17.0], (20, 31), 0.5),
        ("threshold_0.3", smooth_probabilities(28), [10.0, 8.0, 40.0, 30.0], (45, 70), 0.3),
        ("threshold_0_region", smooth_probabilities(28), [10.4, 8.6, 40.2, 30.1], (45, 70), 0.0),
        ("threshold_1", ones28, [10.0, 8.0, 40.0, 30.0], (45, 70), 1.0),
        ("portrait_image", smooth_probabilities(28), [2.0, 10.0, 18.0, 45.0], (50, 20), 0.5),
        ("box_on_last_column", smooth_probabilities(14), [69.0, 10.0, 70.0, 20.0], (45, 70), 0.5),
        ("box_just_outside_region_edge", smooth_probabilities(14), [70.0, 10.0, 71.0, 20.0], (45, 70), 0.5),
    ]
    for k in range(16):
        m = 28 if k % 2 == 0 else 14
        img_h, img_w = int(rng.randint(20, 60)), int(rng.randint(20, 80))
        x0, y0 = rng.uniform(-10, img_w - 5), rng.uniform(-10, img_h - 5)
        bw, bh = rng.uniform(0.4, 50, 2)
        # keep the box's region in the image (detectron2's arange fails on an empty one)
        x0, y0 = max(x0, 1.0 - bw), max(y0, 1.0 - bh)
        cases.append(("random_%02d" % k, smooth_probabilities(m), [x0, y0, x0 + bw, y0 + bh], (img_h, img_w), 0.5))
    out = []
    for name, probs, box, (img_h, img_w), thr in cases:
        b = box32(box)
        probs = probs.to(torch.float32)
        mask, region, raw = paste_one(probs, b, img_h, img_w, thr)
        out.append({"name": name, "mask_size": int(probs.shape[0]), "probabilities": f32_b64(probs.numpy()),
                    "box": box_json(b), "height": img_h, "width": img_w, "threshold": thr,
                    "region": region, "region_values": f32_b64(raw),
                    "mask": bits(mask), "counts": encode(mask.astype(np.uint8)), "area": int(mask.sum())})
    return out


def rle_cases():
    cases = []
    add = lambda name, m: cases.append((name, np.asarray(m, dtype=np.uint8)))
    add("empty_0x0", np.zeros((0, 0)))
    add("empty_0x5", np.zeros((0, 5)))
    add("empty_3x0", np.zeros((3, 0)))
    add("single_pixel_off", np.zeros((1, 1)))
    add("single_pixel_on", np.ones((1, 1)))
    add("all_zeros", np.zeros((7, 11)))
    add("all_ones", np.ones((7, 11)))
    corners = np.zeros((9, 13)); corners[0, 0] = corners[0, -1] = corners[-1, 0] = corners[-1, -1] = 1
    add("corners", corners)
    first = np.zeros((6, 4)); first[0, 0] = 1
    add("first_pixel_only", first)
    last = np.zeros((6, 4)); last[-1, -1] = 1
    add("last_pixel_only", last)
    add("checkerboard", np.add.outer(np.arange(10), np.arange(15)) % 2)
    add("row_stripes", np.repeat((np.arange(12) % 2)[:, None], 5, 1))
    add("column_stripes", np.repeat((np.arange(5) % 2)[None, :], 12, 0))
    big = image_mask([random_polygon(120, 80, 75, 12), random_polygon(40, 30, 25, 6)], 160, 240)
    add("large_runs_160x240", big)
    add("border_frame", np.pad(np.zeros((20, 30)), 1, constant_values=1))
    for k in range(10):
        h, w = rng.randint(1, 70), rng.randint(1, 70)
        add("random_%02d" % k, (rng.rand(h, w) < rng.uniform(0.05, 0.95)).astype(np.uint8))
    out = []
    for name, m in cases:
        rle = mask_util.encode(np.asfortranarray(m))
        assert rle["size"] == [m.shape[0], m.shape[1]]
        out.append({"name": name, "height": int(m.shape[0]), "width": int(m.shape[1]), "mask": bits(m),
                    "counts": rle["counts"].decode("utf-8"), "area": int(mask_util.area(rle))})
    return out


def write(name, cases):
    os.makedirs(OUT, exist_ok=True)
    doc = {"reference": "pycocotools %s, torch %s (CPU kernels: %s), torchvision %s, numpy %s (generate_masks.py)"
           % (version("pycocotools"), torch.__version__, torch.backends.cpu.get_cpu_capability(),
              torchvision.__version__, np.__version__),
           "cases": cases}
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", name, len(cases), "cases,", os.path.getsize(path), "bytes")


if __name__ == "__main__":
    assert int(np.__version__.split(".")[0]) >= 2, "detectron2's float32 box arithmetic is written for NumPy >= 2 scalar rules"
    torch.set_num_threads(1)
    write("polygon_targets.json", polygon_cases())
    write("bitmask_targets.json", bitmask_cases())
    write("paste.json", paste_cases())
    write("rle_encode.json", rle_cases())
