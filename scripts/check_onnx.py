#!/usr/bin/env python3
"""The ONNX export checked by onnxruntime (`make check-onnx`, run by `make test`).

For each case (a config, with seeded non-trivial weights: no training, no data):
  1. `dcn-export check-weights` writes a checkpoint whose offset branches, norms and biases are
     all non-trivial (a wrong offset layout or a wrong norm cannot match by accident);
  2. `dcn-export onnx` exports it, `--part backbone` (res4, res5) and `--part proposals` (those,
     the RPN head's objectness logits and anchor deltas, and the proposals of the image) or, for
     roialign detectors, `--part detector` (also the box head's detections);
     `onnx.checker.check_model` (full check, with shape inference) must accept each file;
  3. onnxruntime (CPU provider, no custom operator) runs it on synthetic images of several sizes
     (one model, so the height and width are dynamic);
  4. `dcn-export maps` computes our res4, res5, RPN head outputs and proposals of the same inputs;
  5. each map must agree within --tolerance relative (max |ours - onnxruntime| / max |ours|), and
     the proposals must be the same boxes within 1e-3 pixels (the order may differ where two
     scores differ in their last bits; how many moved is reported), and the detections the same
     classes, boxes within 1e-3 pixels and scores within 1e-4.

Exits 1 on any mismatch or failure, naming the case, the image and the map. Needs numpy, onnx and
onnxruntime (the make target installs them into .venv-onnx from PyPI).
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
]

# Outputs compared in pixels (max |ours - onnxruntime| <= BOX_TOLERANCE), not relative.
BOXES = {"proposals"}
BOX_TOLERANCE = 1e-3
# Detections: same class, boxes within BOX_TOLERANCE px, scores within SCORE_TOLERANCE.
DETECTIONS = ["detection_boxes", "detection_scores", "detection_labels"]
SCORE_TOLERANCE = 1e-4

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


def match_detections(theirs, ours):
    """Each detection of onnxruntime partnered with one of ours of the same class (the closest
    box): the largest box distance (pixels) and score difference of the partners, how many sit at
    another position, and whether the counts differ."""
    (tb, ts, tl), (ob, os_, ol) = theirs, ours
    result = {"detection box px": 0.0, "detection score": 0.0, "reordered": 0, "count": len(tb) != len(ob)}
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
    return result


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
    images = {f"image{i}": synthetic_image(rng, h, w) for i, (h, w) in enumerate(sizes)}
    write_safetensors(inputs_path, images)
    run([export, "maps", "--config", config, *sets, "--checkpoint", checkpoint, "--inputs", inputs_path,
         "--out", maps_path, "--threads", str(threads)])
    ours = read_safetensors(maps_path)

    worst, failures, ops, swapped, detections_found = {}, [], set(), {}, {}
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
                error = match_detections([outputs[n] for n in DETECTIONS], [ours[f"{image_name}.{n}"] for n in DETECTIONS])
                for key, value in error.items():
                    if key not in ("reordered", "count"):
                        worst[key] = max(worst.get(key, 0.0), value)
                swapped["detections"] = swapped.get("detections", 0) + error["reordered"]
                where = f"{name}: --part {part}: {image_name} {tuple(image.shape[2:])} detections"
                if error["count"]:
                    failures.append(f"{where}: {len(outputs[DETECTIONS[0]])} from onnxruntime, {len(ours[image_name + '.' + DETECTIONS[0]])} ours")
                elif not (error["detection box px"] <= BOX_TOLERANCE and error["detection score"] <= SCORE_TOLERANCE):
                    failures.append(f"{where}: box {error['detection box px']:.2e} px (bound {BOX_TOLERANCE:.0e}), "
                                    f"score {error['detection score']:.2e} (bound {SCORE_TOLERANCE:.0e}), same class")
                detections_found[part] = detections_found.get(part, 0) + len(outputs[DETECTIONS[0]])
            for output in output_names:
                if output in DETECTIONS:
                    continue
                if f"{image_name}.{output}" not in ours:
                    continue  # proposal_logits: ours are not written (the boxes are compared)
                reference = ours[f"{image_name}.{output}"]
                theirs = outputs[output]
                where = f"{name}: --part {part}: {image_name} {tuple(image.shape[2:])} {output}"
                if theirs.shape != reference.shape:
                    failures.append(f"{where}: onnxruntime's shape {theirs.shape}, ours {reference.shape}")
                    continue
                if output in BOXES:
                    error, reordered = match_boxes(theirs, reference)
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
    return worst, failures, sorted(ops), swapped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=".build/release", help="the folder of the dcn-* tools (default: .build/release)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |ours - onnxruntime| / max |ours| per map (default 1e-4)")
    parser.add_argument("--threads", type=int, default=2, help="threads for ours and onnxruntime (default 2)")
    parser.add_argument("--seed", type=int, default=0)
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
            status = "FAIL" if failures else "ok"
            errors = ", ".join(f"{output} {value:.1e}" + (f" px ({swapped[output]} reordered)" if output in BOXES else "")
                               for output, value in worst.items())
            if "detections" in swapped:
                errors += f" ({swapped['detections']} detections reordered)"
            print(f"  {status:4} {case[0]}: {len(case[3])} images, max relative errors {errors} "
                  f"({time.monotonic() - case_start:.1f} s; ops {', '.join(ops)})")
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
