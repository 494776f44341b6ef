#!/usr/bin/env python3
"""Writes edge_cases.json: pycocotools 2.0.11 reference numbers for dcn-eval's own edge-case
tests: polygon -> RLE (negative, out-of-image and degenerate coordinates,
several parts), compressed RLE strings, IoU with crowd, and small
evaluation cases (images without ground truth, results of categories absent from the ground
truth, a ground truth with id 0, score ties)."""
import json, os, random, io, contextlib
import numpy as np
from pycocotools import mask as M
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

HERE = os.path.dirname(os.path.abspath(__file__))
r = random.Random(11)


def polygons():
    out = []
    shapes = [
        [[-5.3, -2.1, 30.7, -8.0, 41.2, 25.5, -12.0, 33.3]],          # negative coordinates
        [[10, 10, 300, 15, 290, 250, 5, 240]],                           # beyond the image
        [[0, 0, 0, 0, 20, 0, 20, 20, 0, 20]],                            # repeated vertex
        [[5.5, 5.5, 15.25, 5.5, 15.25, 15.75]],                          # triangle
        [[1, 1, 10, 1, 10, 10, 1, 10], [20, 20, 30, 20, 30, 30]],       # two parts

        [[-100, -100, -50, -100, -50, -50, -100, -50]],                  # fully outside
        [[49.9, 0.1, 99.9, 49.9, 49.9, 99.9, 0.1, 49.9]],               # diamond
    ]
    for _ in range(12):
        n = r.randint(3, 9)
        shapes.append([[round(r.uniform(-30, 130), 3) for _ in range(2 * n)]])
    for poly in shapes:
        h, w = 80, 100
        rle = M.merge(M.frPyObjects(poly, h, w))
        out.append({"height": h, "width": w, "polygons": poly, "area": int(M.area(rle)),
                    "bbox": [float(v) for v in M.toBbox(rle)], "counts": rle["counts"].decode()})
    return out


def strings():
    out = []
    for _ in range(20):
        h, w = r.randint(1, 60), r.randint(1, 60)
        m = (np.random.RandomState(r.randint(0, 10**6)).rand(h, w) < r.random()).astype(np.uint8)
        rle = M.encode(np.asfortranarray(m))
        out.append({"height": h, "width": w, "mask_column_major": [int(v) for v in m.flatten(order="F")],
                    "counts": rle["counts"].decode(), "area": int(M.area(rle)), "bbox": [float(v) for v in M.toBbox(rle)]})
    return out


def ious():
    """Mask IoU of random rectangles/polygons, some ground truths crowd."""
    h, w = 50, 70
    dts = [M.frPyObjects([[r.uniform(0, 60) for _ in range(8)]], h, w)[0] for _ in range(6)]
    gts = [M.frPyObjects([[r.uniform(0, 60) for _ in range(8)]], h, w)[0] for _ in range(5)]
    crowd = [0, 1, 0, 1, 0]
    o = M.iou(dts, gts, crowd)
    return {"height": h, "width": w, "detections": [d["counts"].decode() for d in dts],
            "ground_truths": [g["counts"].decode() for g in gts], "crowd": crowd,
            "iou": [[float(v) for v in row] for row in o]}


def evaluate(gt, dets, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(); c.dataset = gt; c.createIndex()
        d = c.loadRes(dets)
        e = COCOeval(c, d, iou_type); e.evaluate(); e.accumulate(); e.summarize()
    return [float(v) for v in e.stats]


def eval_cases():
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    images = [{"id": i, "width": 200, "height": 150} for i in (4, 9, 2)]
    anns = [
        {"id": 0, "image_id": 4, "category_id": 1, "bbox": [10, 10, 50, 40], "area": 1800.0, "iscrowd": 0},
        {"id": 7, "image_id": 4, "category_id": 1, "bbox": [100, 20, 30, 30], "area": 800.0, "iscrowd": 0},
        {"id": 8, "image_id": 9, "category_id": 2, "bbox": [0, 0, 120, 100], "area": 11000.0, "iscrowd": 1},
        {"id": 9, "image_id": 9, "category_id": 2, "bbox": [40, 40, 20, 20], "area": 400.0, "iscrowd": 0},
    ]
    for a in anns:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    dets = [
        {"image_id": 4, "category_id": 1, "bbox": [11, 9, 50, 41], "score": 0.9},    # matches gt id 0
        {"image_id": 4, "category_id": 1, "bbox": [101, 21, 29, 30], "score": 0.9},  # tie
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.95},    # image without gt
        {"image_id": 2, "category_id": 2, "bbox": [5, 5, 30, 20], "score": 0.5},
        {"image_id": 9, "category_id": 2, "bbox": [41, 39, 20, 21], "score": 0.6},
        {"image_id": 9, "category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.7},   # inside the crowd
        {"image_id": 9, "category_id": 2, "bbox": [42, 42, 18, 18], "score": 0.6},
        {"image_id": 9, "category_id": 5, "bbox": [40, 40, 20, 20], "score": 0.99},  # category not in gt
    ]
    gt = {"images": images, "annotations": anns, "categories": cats}
    without_unknown = [d for d in dets if d["category_id"] != 5]
    return [
        {"name": "gt id 0, ties, image without gt, crowd, unknown category", "ground_truth": gt, "results": dets,
         "iou_type": "bbox", "stats": evaluate(json.loads(json.dumps(gt)), json.loads(json.dumps(dets)), "bbox")},
        {"name": "same without the unknown category", "ground_truth": gt, "results": without_unknown,
         "iou_type": "bbox", "stats": evaluate(json.loads(json.dumps(gt)), json.loads(json.dumps(without_unknown)), "bbox")},
        {"name": "segm from box results (polygon of the box)", "ground_truth": gt, "results": without_unknown,
         "iou_type": "segm", "stats": evaluate(json.loads(json.dumps(gt)), json.loads(json.dumps(without_unknown)), "segm")},
    ]


if __name__ == "__main__":
    out = {"reference": "pycocotools 2.0.11", "polygons": polygons(), "rle_strings": strings(), "iou": ious(),
           "evaluations": eval_cases()}
    json.dump(out, open(os.path.join(HERE, "edge_cases.json"), "w"))
    print("wrote edge_cases.json")
