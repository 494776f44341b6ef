#!/usr/bin/env python3
"""The ONNX export checked by onnxruntime (`make check-onnx`, run by `make test`).

For each case (a config, with seeded non-trivial weights: no training, no data):
  1. `dcn-export check-weights` writes a checkpoint whose offset branches, norms and biases are
     all non-trivial (a wrong offset layout or a wrong norm cannot match by accident);
  2. `dcn-export onnx` exports it, `--part backbone` (res4, res5) and `--part detector` (those, the
     RPN head's objectness logits and anchor deltas, the proposals of the image, the box head's
     detections and, for Mask R-CNN, their masks); `onnx.checker.check_model` (full check, with
     shape inference) must accept each file;
  3. onnxruntime (CPU provider, no custom operator) runs it on synthetic images of several sizes
     (one model, so the height and width are dynamic);
  4. `dcn-export maps` computes ours for the same inputs;
  5. each map must agree within --tolerance relative (max |ours - onnxruntime| / max |ours|), the
     proposals must be the same boxes within 1e-3 pixels (the order may differ where two scores
     differ in their last bits; how many moved is reported), the detections the same classes,
     boxes within 1e-3 pixels and scores within 1e-4, and each mask, pasted into the image as ours
     is pasted, an IoU >= 0.99 with ours.
The demo case also runs `dcn-detect` on 10 synthetic PNG images and compares its detections.json
(boxes, scores, classes, RLE masks) with onnxruntime's outputs on the same pixels.

Exits 1 on any mismatch or failure, naming the case, the image and the output. Needs numpy, onnx
and onnxruntime (the make target installs them into .venv-onnx from PyPI).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

# (name, config, --set overrides, image sizes (height, width), exported parts).
SMALL = [(96, 128), (128, 96), (100, 76), (64, 64)]
DETECTOR = ["backbone", "detector"]  # everything: the maps, the proposals, the detections (and masks)
CASES = [
    ("demo: Mask R-CNN, R-50 (demo widths), mdconv@c3~c5 + mdpool + mimic, group norm", "configs/demo.yaml", [], SMALL, DETECTOR),
    ("demo, regular convs, roialign", "configs/demo_regular.yaml", [], SMALL, DETECTOR),
    # RoIPool quantises: proposals a few pixels apart pool identical features, so their scores tie
    # up to float noise (sgemm tile edges, in ours and in onnxruntime) and which of two tied
    # overlapping boxes an NMS keeps is that noise. This case compares every candidate instead: no
    # suppression (IoU > 1 never happens) and no cut at 100.
    ("demo, regular convs, roipool (every candidate: no NMS, no top-100)", "configs/demo_regular.yaml",
     ["roi_head.extractor=roipool", "roi_head.nms_threshold=1.0", "roi_head.detections_per_image=10000"], SMALL, DETECTOR),
    ("demo, dconv@c3~c5 + dpool", "configs/demo.yaml", ["backbone.conv_type=dconv", "roi_head.extractor=dpool"], SMALL, DETECTOR),
    ("demo, mdconv@c3~c5, frozen BN, roialign", "configs/demo.yaml", ["backbone.norm=frozen_bn", "roi_head.extractor=roialign"], SMALL, DETECTOR),
    ("R-50 mdconv@c3~c5 + mdpool + mimic (COCO), frozen BN", "configs/coco/faster_rcnn_r50_mdconv_c3-c5_mdpool_mimic_fg.yaml", [],
     [(128, 160), (96, 136)], DETECTOR),
    # Last, so that the cases above keep their seeds (the seed is the case's index).
    ("demo, batches of 2 and 3 images past the RPN", "configs/demo.yaml", [], [(2, 96, 128), (3, 64, 96)], DETECTOR),
]

# The comparison with dcn-detect: (case index, images, (height, width)): the demo at its test size
# (data.test_min_size 256, test max size 384).
DETECT = (0, 10, (256, 320))

# Outputs compared in pixels (max |ours - onnxruntime| <= BOX_TOLERANCE), not relative.
BOXES = {"proposals"}
BOX_TOLERANCE = 1e-3
# Detections: same class, boxes within BOX_TOLERANCE px, scores within SCORE_TOLERANCE.
DETECTIONS = ["detection_boxes", "detection_scores", "detection_labels"]
SCORE_TOLERANCE = 1e-4
# Masks: onnxruntime's [D, M, M] probabilities pasted into the image as ours paste (paste_mask),
# against ours pasted by `dcn-export maps`: IoU >= MASK_IOU per detection.
MASKS = "detection_masks"
# Each proposal's and detection's image in the batch.
PROPOSAL_IMAGES, DETECTION_IMAGES = "proposal_batch_index", "detection_batch_index"
MASK_IOU = 0.99
MASK_TIE = 1e-4

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def write_safetensors(path, tensors):
    """float32 tensors in the safetensors format (8-byte header length, JSON header, data)."""
    header, body, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        body.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in body:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        body = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", f"{path}: {name} is {entry['dtype']}, expected F32"
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(entry["shape"])
    return tensors


def synthetic_pixels(rng, height, width):
    """An 8-bit RGB image [H, W, 3] (synthetic_image before normalising, quantised)."""
    image = synthetic_image(rng, height, width)[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def normalised(pixels):
    """[H, W, 3] uint8 -> the model's input [1, 3, H, W]: (v / 255 - mean) / std, as our data loader."""
    image = pixels.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
    return ((image - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def synthetic_image(rng, height, width):
    """A normalised RGB image [1, 3, H, W]: smooth blobs, edges and noise in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((3, height, width), dtype=np.float32)
    for c in range(3):
        for _ in range(4):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(4, max(height, width) / 3)
            image[c] += rng.uniform(0.3, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        image[c] += (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / (height + width)
    image += rng.uniform(0, 0.1, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 1)[None]
    return ((image - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def match_boxes(theirs, ours):
    """The same boxes in any order: the largest distance (max over coordinates, pixels) from a box
    of one list to its partner in the other (each box partnered once, in order of score), and how
    many boxes sit at another position than their partner (two proposals whose scores differ in
    the last bits of a float may swap places between two implementations)."""
    theirs, ours = theirs.astype(np.float64), ours.astype(np.float64)
    if len(theirs) != len(ours):
        return float("inf"), 0
    free = np.ones(len(ours), dtype=bool)
    worst, moved = 0.0, 0
    for i, box in enumerate(theirs):
        distance = np.where(free, np.abs(ours - box).max(axis=1), np.inf)
        j = int(np.argmin(distance))
        worst = max(worst, float(distance[j]))
        free[j] = False
        moved += int(i != j)
    return worst, moved


def match_detections(theirs, ours, images=None):
    """Each detection of onnxruntime partnered with one of ours of the same class (and image of
    the batch, `images` = (theirs, ours)) with the closest box: the largest box distance (pixels)
    and score difference of the partners, how many sit at another position, and whether the
    counts differ."""
    (tb, ts, tl), (ob, os_, ol) = theirs, ours
    if images is not None:  # the class and the image as one key
        tl = np.asarray(tl, dtype=np.int64) + 1_000_000 * np.asarray(images[0], dtype=np.int64)
        ol = np.asarray(ol, dtype=np.int64) + 1_000_000 * np.asarray(images[1], dtype=np.int64)
    result = {"detection box px": 0.0, "detection score": 0.0, "reordered": 0, "count": len(tb) != len(ob), "pairs": []}
    if result["count"]:
        return result
    free = np.ones(len(ob), dtype=bool)
    for i in range(len(tb)):
        same = free & (ol.astype(np.int64) == int(tl[i]))
        if not same.any():
            result["detection box px"] = float("inf")
            continue
        distance = np.where(same, np.abs(ob.astype(np.float64) - tb[i]).max(axis=1), np.inf)
        j = int(np.argmin(distance))
        free[j] = False
        result["detection box px"] = max(result["detection box px"], float(distance[j]))
        result["detection score"] = max(result["detection score"], abs(float(ts[i]) - float(os_[j])))
        result["reordered"] += int(i != j)
        result["pairs"].append((i, j))
    return result


def paste_mask(probabilities, box, height, width, threshold=0.5, values=False):
    """Our pasteMask (DCNAnnotations/MaskGeometry.swift, detectron2's paste_masks_in_image) in
    float32 steps: the 0/1 [height, width] mask where the M x M probabilities, resampled at the
    pixel centres of the box's region (grid_sample, bilinear, zeros, align_corners=False), are >=
    threshold. (Ours fuses two multiply-adds as PyTorch's kernel; a pixel could differ only where
    a value sits within a rounding of the threshold.)"""
    f = np.float32
    m = probabilities.shape[0]
    x0, y0, x1, y1 = (f(v) for v in box)
    out = np.zeros((height, width), dtype=np.uint8)
    rx0, ry0 = int(max(np.floor(x0) - 1, 0)), int(max(np.floor(y0) - 1, 0))
    rx1, ry1 = int(min(np.ceil(x1) + 1, width)), int(min(np.ceil(y1) + 1, height))
    if not (rx0 < rx1 and ry0 < ry1):
        return (out, np.full((height, width), -1.0, dtype=np.float32)) if values else out

    def axis(lo, hi, b0, b1):
        g = ((np.arange(lo, hi).astype(f) + f(0.5)) - b0) / (b1 - b0) * f(2) - f(1)
        c = f(-0.5) + (g + f(1)) * f(m / 2)
        low = np.floor(c)
        frac = (c - low).astype(f)
        inside = (low >= -1) & (low < m)
        low_i = np.where(inside, low, -10).astype(np.int64)
        low_ok = inside & (low_i >= 0)
        high_ok = inside & (low_i + 1 < m)
        return low_i, low_ok, high_ok, frac

    xl, xlo, xho, fx = axis(rx0, rx1, x0, x1)
    yl, ylo, yho, fy = axis(ry0, ry1, y0, y1)
    p = probabilities.astype(f)

    def read(yi, yok, xi, xok):
        v = p[np.clip(yi, 0, m - 1)[:, None], np.clip(xi, 0, m - 1)[None, :]]
        return np.where(yok[:, None] & xok[None, :], v, f(0))

    ry, rx = (f(1) - fy)[:, None], (f(1) - fx)[None, :]
    value = (read(yl, ylo, xl, xlo) * (ry * rx) + read(yl, ylo, xl + 1, xho) * (ry * fx[None, :])
             + read(yl + 1, yho, xl, xlo) * (fy[:, None] * rx) + read(yl + 1, yho, xl + 1, xho) * (fy[:, None] * fx[None, :]))
    out[ry0:ry1, rx0:rx1] = value >= threshold
    if values:
        full = np.full((height, width), -1.0, dtype=np.float32)
        full[ry0:ry1, rx0:rx1] = value
        return out, full
    return out


def mask_iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / float(union)


def compare_masks(probabilities, box, height, width, reference):
    """onnxruntime's mask pasted (paste_mask) against ours pasted (`reference`, 0/1): the IoU, and
    whether every pixel where they differ has a resampled probability within MASK_TIE of the 0.5
    threshold (a tie: 1e-5 apart in the probabilities can put such a pixel on either side; in a
    mask of 40 pixels one such pixel is an IoU of 0.975)."""
    mine, values = paste_mask(probabilities, box, height, width, values=True)
    reference = reference > 0.5
    differ = mine.astype(bool) != reference
    return mask_iou(mine, reference), bool(np.all(np.abs(values[differ] - 0.5) <= MASK_TIE)), int(differ.sum())


def rle_decode(segmentation):
    """A COCO RLE ({size: [h, w], counts: compressed string}, column-major) as an [h, w] 0/1 mask."""
    height, width = segmentation["size"]
    text, counts, p = segmentation["counts"], [], 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(height * width, dtype=np.uint8)
    position, value = 0, 0
    for n in counts:
        flat[position:position + n] = value
        position += n
        value = 1 - value
    return flat.reshape(width, height).T


def write_png(path, rgb):
    """An 8-bit RGB PNG (no library: zlib and CRCs)."""
    import zlib
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(f"check_onnx: FAILED: {' '.join(command)}\n{result.stdout}{result.stderr}")
        sys.exit(1)


def check_case(bin_dir, work, index, case, tolerance, threads, seed):
    name, config, overrides, sizes, parts = case
    sets = [arg for o in overrides for arg in ("--set", o)]
    checkpoint = os.path.join(work, f"case{index}.safetensors")
    inputs_path = os.path.join(work, f"case{index}_inputs.safetensors")
    maps_path = os.path.join(work, f"case{index}_maps.safetensors")
    export = os.path.join(bin_dir, "dcn-export")
    run([export, "check-weights", "--config", config, *sets, "--seed", str(seed + index), "--out", checkpoint])
    rng = np.random.default_rng(seed + index)
    # (height, width): one image; (n, height, width): a batch of n images of that size.
    images = {f"image{i}": np.concatenate([synthetic_image(rng, *size[-2:]) for _ in range(size[0] if len(size) == 3 else 1)])
              for i, size in enumerate(sizes)}
    write_safetensors(inputs_path, images)
    run([export, "maps", "--config", config, *sets, "--checkpoint", checkpoint, "--inputs", inputs_path,
         "--out", maps_path, "--threads", str(threads)])
    ours = read_safetensors(maps_path)

    worst, failures, ops, swapped, detections_found, masks_found = {}, [], set(), {}, {}, {}
    for part in parts:
        model_path = os.path.join(work, f"case{index}_{part}.onnx")
        run([export, "onnx", "--config", config, *sets, "--checkpoint", checkpoint, "--out", model_path,
             "--part", part, "--threads", str(threads)])
        onnx.checker.check_model(model_path, full_check=True)
        ops |= {n.op_type for n in onnx.load(model_path).graph.node}

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        output_names = [o.name for o in session.get_outputs()]
        for image_name, image in images.items():
            outputs = dict(zip(output_names, session.run(output_names, {"image": image})))
            if DETECTIONS[0] in outputs:
                error = match_detections([outputs[n] for n in DETECTIONS], [ours[f"{image_name}.{n}"] for n in DETECTIONS],
                                         (outputs[DETECTION_IMAGES], ours[f"{image_name}.{DETECTION_IMAGES}"]))
                for key, value in error.items():
                    if key not in ("reordered", "count", "pairs"):
                        worst[key] = max(worst.get(key, 0.0), value)
                swapped["detections"] = swapped.get("detections", 0) + error["reordered"]
                where = f"{name}: --part {part}: {image_name} {tuple(image.shape[:1]) + tuple(image.shape[2:])} detections"
                if error["count"]:
                    failures.append(f"{where}: {len(outputs[DETECTIONS[0]])} from onnxruntime, {len(ours[image_name + '.' + DETECTIONS[0]])} ours")
                elif not (error["detection box px"] <= BOX_TOLERANCE and error["detection score"] <= SCORE_TOLERANCE):
                    failures.append(f"{where}: box {error['detection box px']:.2e} px (bound {BOX_TOLERANCE:.0e}), "
                                    f"score {error['detection score']:.2e} (bound {SCORE_TOLERANCE:.0e}), same class")
                detections_found[part] = detections_found.get(part, 0) + len(outputs[DETECTIONS[0]])
                if MASKS in outputs and not error["count"]:
                    height, width = image.shape[2:]
                    ours_masks, ours_pasted = ours[f"{image_name}.{MASKS}"], ours[f"{image_name}.{MASKS}_pasted"]
                    masks_found[part] = masks_found.get(part, 0) + int((ours_pasted > 0.5).any(axis=(1, 2)).sum())
                    for i, j in error["pairs"]:
                        worst["mask probability"] = max(worst.get("mask probability", 0.0),
                                                        float(np.abs(outputs[MASKS][i].astype(np.float64) - ours_masks[j]).max()))
                        iou, ties, differ = compare_masks(outputs[MASKS][i], outputs[DETECTIONS[0]][i], height, width, ours_pasted[j])
                        worst["mask IoU"] = min(worst.get("mask IoU", 1.0), iou)
                        if iou < MASK_IOU and ties:
                            swapped["mask threshold ties"] = swapped.get("mask threshold ties", 0) + differ
                        elif iou < MASK_IOU:
                            failures.append(f"{where}: detection {i}'s pasted mask has IoU {iou:.4f} with ours (bound {MASK_IOU}), "
                                            f"{differ} pixels differ, not all within {MASK_TIE:.0e} of the threshold")
            for output in output_names:
                if output in DETECTIONS or output in (MASKS, PROPOSAL_IMAGES, DETECTION_IMAGES):
                    continue  # compared with the boxes
                if f"{image_name}.{output}" not in ours:
                    continue  # proposal_logits: ours are not written (the boxes are compared)
                reference = ours[f"{image_name}.{output}"]
                theirs = outputs[output]
                where = f"{name}: --part {part}: {image_name} {tuple(image.shape[:1]) + tuple(image.shape[2:])} {output}"
                if theirs.shape != reference.shape:
                    failures.append(f"{where}: onnxruntime's shape {theirs.shape}, ours {reference.shape}")
                    continue
                if output in BOXES:
                    # Each image's boxes apart from the others' (its index times 1e6 pixels added).
                    error, reordered = match_boxes(theirs + 1e6 * outputs[PROPOSAL_IMAGES][:, None],
                                                   reference + 1e6 * ours[f"{image_name}.{PROPOSAL_IMAGES}"][:, None].astype(np.float64))
                    worst[output] = max(worst.get(output, 0.0), error)
                    swapped[output] = swapped.get(output, 0) + reordered
                    if not error <= BOX_TOLERANCE:
                        failures.append(f"{where}: a box has no partner within {BOX_TOLERANCE:.0e} px (closest {error:.2e} px)")
                    continue
                scale = float(np.abs(reference).max())
                if not np.isfinite(theirs).all() or scale == 0:
                    failures.append(f"{where}: non-finite or all-zero outputs (max |ours| = {scale})")
                    continue
                relative = float(np.abs(theirs.astype(np.float64) - reference).max()) / scale
                worst[output] = max(worst.get(output, 0.0), relative)
                if not relative <= tolerance:
                    failures.append(f"{where}: max |ours - onnxruntime| / max |ours| = {relative:.2e} > {tolerance:.0e}")
    if "detector" in parts and not detections_found.get("detector"):
        failures.append(f"{name}: no detection in any image: the check compares nothing")
    if masks_found.get("detector") == 0:
        failures.append(f"{name}: every pasted mask is empty: the mask check compares nothing")
    if masks_found:
        worst["non-empty masks"] = masks_found["detector"]
    return worst, failures, sorted(ops), swapped


def check_detect(bin_dir, work, index, case, model_path, count, size, threads, seed):
    """onnxruntime's detections against `dcn-detect`'s detections.json on `count` synthetic PNG
    images of `size` (height, width): the config's test size (shorter side = data.test_min_size,
    sides multiples of 32), so dcn-detect neither resizes nor pads and its boxes and masks are in
    the pixels onnxruntime sees; its masks are pasted (RLE), onnxruntime's are pasted by paste_mask.
    Returns (worst errors, failures, images compared, detections compared)."""
    name, config, overrides, _, _ = case
    sets = [arg for o in overrides for arg in ("--set", o)]
    folder = os.path.join(work, f"case{index}_detect_images")
    out = os.path.join(work, f"case{index}_detect")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed + 100 + index)
    inputs = {}
    for k in range(count):
        pixels = synthetic_pixels(rng, *size)
        path = os.path.join(folder, f"synthetic{k:02d}.png")
        write_png(path, pixels)
        inputs[path] = normalised(pixels)
    run([os.path.join(bin_dir, "dcn-detect"), "--config", config, *sets, "--checkpoint", os.path.join(work, f"case{index}.safetensors"),
         folder, "--out", out, "--threads", str(threads), "--force"])
    with open(os.path.join(out, "detections.json")) as f:
        results = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    worst, failures, compared = {}, [], 0
    for path, image in inputs.items():
        theirs = dict(zip(output_names, session.run(output_names, {"image": image})))
        mine = [r for r in results if os.path.basename(r["file_name"]) == os.path.basename(path)]
        boxes = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in mine],
                         dtype=np.float64).reshape(-1, 4)
        scores = np.array([r["score"] for r in mine], dtype=np.float64)
        labels = np.array([r["category_id"] for r in mine], dtype=np.int64)
        where = f"{name}: dcn-detect {os.path.basename(path)} {size}"
        error = match_detections([theirs[n] for n in DETECTIONS], (boxes, scores, labels))
        if error["count"]:
            failures.append(f"{where}: {len(theirs[DETECTIONS[0]])} detections from onnxruntime, {len(mine)} in detections.json")
            continue
        for key in ("detection box px", "detection score"):
            worst[key] = max(worst.get(key, 0.0), error[key])
        if not (error["detection box px"] <= BOX_TOLERANCE and error["detection score"] <= SCORE_TOLERANCE):
            failures.append(f"{where}: box {error['detection box px']:.2e} px, score {error['detection score']:.2e}")
        compared += len(mine)
        if MASKS in theirs:
            for i, j in error["pairs"]:
                iou, ties, differ = compare_masks(theirs[MASKS][i], theirs[DETECTIONS[0]][i], *size, rle_decode(mine[j]["segmentation"]))
                worst["mask IoU"] = min(worst.get("mask IoU", 1.0), iou)
                if iou < MASK_IOU and ties:
                    worst["mask threshold ties"] = worst.get("mask threshold ties", 0) + differ
                elif iou < MASK_IOU:
                    failures.append(f"{where}: detection {i}'s pasted mask has IoU {iou:.4f} with detections.json's (bound {MASK_IOU}), "
                                    f"{differ} pixels differ, not all within {MASK_TIE:.0e} of the threshold")
    if compared == 0:
        failures.append(f"{name}: dcn-detect: no detection in any image: the check compares nothing")
    return worst, failures, len(inputs), compared


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=".build/release", help="the folder of the dcn-* tools (default: .build/release)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |ours - onnxruntime| / max |ours| per map (default 1e-4)")
    parser.add_argument("--threads", type=int, default=2, help="threads for ours and onnxruntime (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-detect", action="store_true", help="skip the comparison with dcn-detect")
    parser.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT")
    parser.add_argument("--keep", metavar="DIR", help="write the checkpoints, models and maps here and keep them")
    args = parser.parse_args()
    if not os.access(os.path.join(args.bin, "dcn-export"), os.X_OK):
        sys.exit(f"check_onnx: {args.bin}/dcn-export not found: build first (make build)")

    start = time.monotonic()
    work = args.keep or tempfile.mkdtemp(prefix="check_onnx.")
    os.makedirs(work, exist_ok=True)
    print(f"check_onnx: onnx {onnx.__version__}, onnxruntime {ort.__version__} (CPU), tolerance {args.tolerance:.0e} relative")
    failed, failed_cases, ran = [], 0, 0
    try:
        for index, case in enumerate(CASES):
            if args.only and args.only not in case[0]:
                continue
            ran += 1
            case_start = time.monotonic()
            worst, failures, ops, swapped = check_case(args.bin, work, index, case, args.tolerance, args.threads, args.seed)
            if index == DETECT[0] and not args.no_detect:
                detect_worst, detect_failures, images, compared = check_detect(args.bin, work, index, case,
                                                                               os.path.join(work, f"case{index}_detector.onnx"),
                                                                               DETECT[1], DETECT[2], args.threads, args.seed)
                failures += detect_failures
                detect_line = (f"       and dcn-detect's detections.json on {images} synthetic {DETECT[2][0]}x{DETECT[2][1]} PNGs: "
                               f"{compared} detections, " + ", ".join(f"{k} {v:.4f} (lowest)" if k == "mask IoU" else f"{k} {v:.1e}"
                                                                        for k, v in detect_worst.items()))
            else:
                detect_line = None
            status = "FAIL" if failures else "ok"
            errors = ", ".join((f"{output} {value:.4f} (lowest)" if output == "mask IoU" else
                                f"{output} {value}" if output == "non-empty masks" else f"{output} {value:.1e}")
                               + (f" px ({swapped[output]} reordered)" if output in BOXES else "")
                               for output, value in worst.items())
            if "detections" in swapped:
                errors += f" ({swapped['detections']} detections reordered)"
            if "mask threshold ties" in swapped:
                errors += f" ({swapped['mask threshold ties']} mask pixels at threshold ties)"
            print(f"  {status:4} {case[0]}: {len(case[3])} inputs, max relative errors {errors} "
                  f"({time.monotonic() - case_start:.1f} s; ops {', '.join(ops)})")
            if detect_line:
                print(detect_line)
            for f in failures:
                print(f"       {f}")
            failed += failures
            failed_cases += 1 if failures else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"check_onnx: {ran - failed_cases} of {ran} cases agree "
          f"({time.monotonic() - start:.0f} s)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
