// COCO and PASCAL VOC evaluation (issue 3). Filled in by the evaluation work.
