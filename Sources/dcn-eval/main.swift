// dcn-eval: COCO and VOC evaluation (issue 3).
print("dcn-eval: not built yet")
