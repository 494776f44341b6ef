"""Writes the small inputs of the fuzz tests (Tests/DCNEvalTests/FuzzTests.swift): five images of
instances_val2014_100.json (two with crowd RLE annotations) with their annotations and used
categories, and the detections of instances_val2014_fakesegm100_results.json on them
(compressed RLE segmentations)."""
import json

IMAGES = [42, 73, 133, 715, 257]
gt = json.load(open("instances_val2014_100.json"))
res = json.load(open("instances_val2014_fakesegm100_results.json"))
annotations = [a for a in gt["annotations"] if a["image_id"] in IMAGES]
used = {a["category_id"] for a in annotations}
small = {
    "images": [i for i in gt["images"] if i["id"] in IMAGES],
    "annotations": annotations,
    "categories": [c for c in gt["categories"] if c["id"] in used],
}
json.dump(small, open("fuzz_gt.json", "w"), separators=(",", ":"))
json.dump([r for r in res if r["image_id"] in IMAGES], open("fuzz_segm_results.json", "w"), separators=(",", ":"))
