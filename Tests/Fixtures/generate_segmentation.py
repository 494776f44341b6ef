#!/usr/bin/env python3
"""Writes the semantic-segmentation fixtures in Tests/Fixtures/segmentation/ (read by
Tests/DCNEvalTests/SegmentationEvalTests.swift and Tests/DCNDataTests/SegmentationLabelTests.swift):

  labels/*.png        ground-truth label maps of 5 classes (0..4) with void (255) pixels, of three
                      sizes; img_a and img_c are 8-bit palette PNGs with the VOC colour map (as VOC's
                      SegmentationClass), img_b is 8-bit grayscale (as SBD's SegmentationClassAug).
                      Class 3 never occurs in the labels; class 4 is labelled in img_b only.
  predictions/*.png   8-bit grayscale predictions of the same sizes. Class 3 is predicted only at
                      void-labelled pixels, so it is absent from both labels and predictions once
                      void is dropped: its IoU is NaN (null) and it is left out of mIoU.
  expected.json       the reference numbers:
                        confusion   torchvision's ConfusionMatrix.update over the three images
                                    (rows = label, columns = prediction, int64 counts);
                        iou         torchvision's ConfusionMatrix.compute `iu`, in float64
                                    (torchvision itself calls .float(), i.e. float32: the counts
                                    are the reference, the float64 division is what we compare);
                        mIoU        np.nanmean(iou), as mmsegmentation's IoUMetric summarises;
                        aAcc, acc   mmseg's total_area_to_metrics (float64).
                      The mmseg areas (intersect_and_union summed over images) are checked
                      against the confusion matrix before the file is written.
  loaders/            label maps for the loader tests:
                        palette_voc.png    8-bit palette, VOC colours, values {0, 1, 15, 255}
                        palette_4bit.png   4-bit palette (Pillow's choice for a 16-colour palette),
                                           values 0..15
                        gray.png           8-bit grayscale, values {0, 7, 18, 255}
                        bad_value.png      8-bit grayscale holding 37 (not a VOC class, not void)
                        rgb.png            8-bit RGB (not a label map)
                        gray16.png         16-bit grayscale (not a label map)
                        truncated.png      gray.png cut in its image data
                        not_a_png.png      text bytes
                      and loaders.json with each readable file's size and values.

The reference logic is re-implemented from (read 2026-12-06):
  pytorch/vision references/segmentation/utils.py, class ConfusionMatrix:
      k = (a >= 0) & (a < n); inds = n * a[k] + b[k]; mat += bincount(inds, minlength=n**2)
      iu = diag(h) / (h.sum(1) + h.sum(0) - diag(h))
  open-mmlab/mmsegmentation mmseg/evaluation/metrics/iou_metric.py, IoUMetric:
      mask = label != ignore_index; intersect = pred[pred == label];
      areas = histc(..., bins=n, min=0, max=n-1); union = pred + label - intersect;
      iou = intersect / union; mIoU = np.nanmean(iou); aAcc = intersect.sum() / label.sum()

Needs: numpy, Pillow, torch (bincount and histc as the references call them).
Run: python3 generate_segmentation.py
"""
import json
import os

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "segmentation")
N = 5
VOID = 255


def voc_palette():
    p = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        p += [r, g, b]
    return p


def save_palette(array, path, bits=None):
    im = Image.fromarray(array.astype(np.uint8), mode="P")
    im.putpalette(voc_palette())
    if bits is None:
        im.save(path)
    else:
        im.save(path, bits=bits)


def save_gray(array, path):
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


# torchvision references/segmentation/utils.py ConfusionMatrix, on CPU tensors.
class TorchvisionConfusionMatrix:
    def __init__(self, n):
        self.n = n
        self.mat = torch.zeros((n, n), dtype=torch.int64)

    def update(self, a, b):
        n = self.n
        k = (a >= 0) & (a < n)
        inds = n * a[k].to(torch.int64) + b[k]
        self.mat += torch.bincount(inds, minlength=n ** 2).reshape(n, n)

    def compute_iu_float64(self):
        h = self.mat.to(torch.float64)
        return torch.diag(h) / (h.sum(1) + h.sum(0) - torch.diag(h))


# mmseg IoUMetric.intersect_and_union (histc in float64 here; the counts are integers either way).
def mmseg_intersect_and_union(pred, label, n, ignore_index):
    mask = label != ignore_index
    pred = pred[mask]
    label = label[mask]
    intersect = pred[pred == label]
    hist = lambda x: torch.histc(x.to(torch.float64), bins=n, min=0, max=n - 1)
    area_intersect, area_pred, area_label = hist(intersect), hist(pred), hist(label)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def make_maps(rng):
    """Three (name, label, prediction, palette?) triples."""
    maps = []
    for name, (h, w), palette in [("img_a", (9, 13), True), ("img_b", (16, 7), False), ("img_c", (5, 21), True)]:
        # Labels from classes {0, 1, 2} (and 4 in img_b), never 3; void on a border and in spots.
        classes = [0, 1, 2, 4] if name == "img_b" else [0, 1, 2]
        label = rng.choice(classes, size=(h, w), p=None).astype(np.int64)
        label[0, :] = VOID
        label[rng.random((h, w)) < 0.1] = VOID
        # Predictions: mostly right, some confusions among 0, 1, 2, 4; class 3 only where void.
        pred = label.copy()
        wrong = rng.random((h, w)) < 0.3
        pred[wrong] = rng.choice([0, 1, 2, 4], size=int(wrong.sum()))
        void = label == VOID
        pred[void] = rng.choice([0, 1, 3], size=int(void.sum()))
        maps.append((name, label, pred, palette))
    return maps


def main():
    rng = np.random.default_rng(32)
    os.makedirs(os.path.join(OUT, "labels"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "predictions"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "loaders"), exist_ok=True)

    cm = TorchvisionConfusionMatrix(N)
    totals = [torch.zeros(N, dtype=torch.float64) for _ in range(4)]
    sizes = {}
    for name, label, pred, palette in make_maps(rng):
        (save_palette if palette else save_gray)(label, os.path.join(OUT, "labels", name + ".png"))
        save_gray(pred, os.path.join(OUT, "predictions", name + ".png"))
        # Read back as the references would (PIL gives palette indices / gray values).
        a = torch.from_numpy(np.array(Image.open(os.path.join(OUT, "labels", name + ".png"))).astype(np.int64))
        b = torch.from_numpy(np.array(Image.open(os.path.join(OUT, "predictions", name + ".png"))).astype(np.int64))
        assert torch.equal(a, torch.from_numpy(label)) and torch.equal(b, torch.from_numpy(pred))
        cm.update(a.flatten(), b.flatten())
        for t, v in zip(totals, mmseg_intersect_and_union(b, a, N, VOID)):
            t += v
        sizes[name] = [int(label.shape[1]), int(label.shape[0])]

    mat = cm.mat.numpy()
    iu = cm.compute_iu_float64().numpy()
    inter, union, area_pred, area_label = [t.numpy() for t in totals]
    # The two references count the same pixels.
    assert np.array_equal(inter, np.diag(mat)) and np.array_equal(area_label, mat.sum(1)) and np.array_equal(area_pred, mat.sum(0))
    with np.errstate(invalid="ignore"):
        mm_iou = inter / union
    assert np.allclose(mm_iou, iu, equal_nan=True, rtol=0, atol=0)
    assert np.isnan(iu[3]) and not np.isnan(iu).all()
    expected = {
        "classes": N,
        "sizes": sizes,
        "confusion": mat.tolist(),
        "iou": [None if np.isnan(v) else float(v) for v in iu],
        "mIoU": float(np.nanmean(iu)),
        "aAcc": float(inter.sum() / area_label.sum()),
        "acc": [None if l == 0 else float(i / l) for i, l in zip(inter, area_label)],
        "pixels": int(area_label.sum()),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    # Loader fixtures.
    L = os.path.join(OUT, "loaders")
    voc = np.array([[0, 1, 15, 255], [255, 15, 1, 0], [0, 0, 1, 1]], dtype=np.uint8)
    save_palette(voc, os.path.join(L, "palette_voc.png"))
    four = (np.arange(6 * 5).reshape(5, 6) % 16).astype(np.uint8)
    im = Image.fromarray(four, mode="P")
    im.putpalette(voc_palette()[: 16 * 3])
    im.save(os.path.join(L, "palette_4bit.png"), bits=4)
    gray = np.array([[0, 7, 18], [255, 18, 7], [0, 0, 255], [7, 7, 7]], dtype=np.uint8)
    save_gray(gray, os.path.join(L, "gray.png"))
    bad = np.zeros((4, 6), dtype=np.uint8)
    bad[2, 3] = 37
    bad[3, 5] = 37
    bad[1, 1] = 255
    save_gray(bad, os.path.join(L, "bad_value.png"))
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8), mode="RGB").save(os.path.join(L, "rgb.png"))
    Image.fromarray(np.full((3, 4), 1000, dtype=np.uint16)).save(os.path.join(L, "gray16.png"))
    with open(os.path.join(L, "gray.png"), "rb") as f:
        data = f.read()
    idat = data.index(b"IDAT")
    with open(os.path.join(L, "truncated.png"), "wb") as f:
        f.write(data[: idat + 10])
    with open(os.path.join(L, "not_a_png.png"), "wb") as f:
        f.write(b"this is not an image\n")
    for name in ["palette_voc.png", "palette_4bit.png", "gray.png", "bad_value.png"]:
        im = Image.open(os.path.join(L, name))
        im.load()
        print(name, im.mode, im.info.get("bits", ""), np.array(im).tolist())
    assert Image.open(os.path.join(L, "palette_4bit.png")).mode == "P"
    loaders = {
        name: {"width": int(a.shape[1]), "height": int(a.shape[0]), "values": a.flatten().tolist(), "palette": pal}
        for name, a, pal in [("palette_voc.png", voc, True), ("palette_4bit.png", four, True), ("gray.png", gray, False), ("bad_value.png", bad, False)]
    }
    with open(os.path.join(L, "loaders.json"), "w") as f:
        json.dump(loaders, f, indent=1)
        f.write("\n")
    print(json.dumps({k: expected[k] for k in ["confusion", "iou", "mIoU", "aAcc"]}))


if __name__ == "__main__":
    main()
