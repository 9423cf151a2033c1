"""Seeing what a model does: training curves, precision-recall curves, a confusion matrix, the
worst images and VOC's mAP. The figures need matplotlib (the `plots` extra); the numbers do not.

- figures.py          a headless matplotlib figure, saved whole; the refusal when it is missing
- training_curves.py  metrics.jsonl read and drawn: losses, learning rate, evaluation stats
- image_boxes.py      ground truth and COCO result records grouped by image, as x1y1x2y2 arrays
- pr_curves.py        per-class precision-recall curves from COCOeval's precision array
- confusion_matrix.py class confusion with a background row and column, per image
- worst_images.py     the images with the most missed and false boxes, drawn
- voc_map.py          PASCAL VOC's mAP@0.5 (all points, or VOC2007's 11 points)
- eval_plots.py       everything `simpledet eval --plots` writes beside metrics.json
"""
