"""Average precision of detections: COCO's metrics through pycocotools when installed, else AP at IoU 0.5.

:func:`ap50` is this example's own implementation, labelled ``AP@0.5 (built-in, all-point interpolation)``
wherever it is reported: per class, detections sorted by score are matched greedily to the not yet matched
ground-truth box of highest IoU (>= 0.5), and AP is the area under the precision envelope over recall (the
all-point interpolation of PASCAL VOC 2010+); the mean is over classes with ground truth. It is not COCO's
101-point AP@[.5:.95]; :func:`coco_metrics` gives those.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import box_iou

from distiller.errors import MissingDependencyError

__all__ = ["ap50", "average_precision", "coco_metrics", "BUILTIN_AP_LABEL"]

BUILTIN_AP_LABEL = "AP@0.5 (built-in, all-point interpolation)"
Detections = Sequence[dict[str, torch.Tensor]]


def average_precision(scores: torch.Tensor, matched: torch.Tensor, positives: int) -> float:
    """Area under the precision envelope of detections with ``scores`` (``matched``: true positive) over recall,
    for ``positives`` ground-truth objects."""
    if positives == 0:
        raise ValueError("average precision needs at least one ground-truth object")
    order = torch.argsort(scores, descending=True, stable=True)
    tp = matched[order].double().cumsum(0)
    precision = tp / torch.arange(1, len(order) + 1, dtype=torch.float64)
    recall = tp / positives
    recall = torch.cat([torch.zeros(1, dtype=torch.float64), recall])
    envelope = torch.cat([precision, torch.zeros(1, dtype=torch.float64)]).flip(0).cummax(0).values.flip(0)
    return float(((recall[1:] - recall[:-1]) * envelope[:-1]).sum())


def _match(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], label: int, iou: float) -> torch.Tensor:
    """True for each detection of ``label`` (in descending score order) that finds an unmatched object."""
    boxes = pred["boxes"][pred["labels"] == label]
    scores = pred["scores"][pred["labels"] == label]
    objects = truth["boxes"][truth["labels"] == label]
    matched = torch.zeros(len(boxes), dtype=torch.bool)
    if len(boxes) == 0 or len(objects) == 0:
        return matched
    overlaps = box_iou(boxes, objects)
    taken = torch.zeros(len(objects), dtype=torch.bool)
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        candidates = overlaps[i].masked_fill(taken, -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= iou:
            taken[best] = matched[i] = True
    return matched


def ap50(predictions: Detections, targets: Detections, iou: float = 0.5) -> dict[str, float]:
    """Per-class AP at IoU ``iou`` and their mean (``'mAP'``), over images in the same order.

    Args:
        predictions: per image ``{'boxes' [N, 4] xyxy, 'scores' [N], 'labels' [N]}`` (a detector's eval output).
        targets: per image ``{'boxes', 'labels'}``.
    """
    labels = sorted({int(label) for t in targets for label in t["labels"]})
    result = {}
    for label in labels:
        scores = torch.cat([p["scores"][p["labels"] == label].detach().cpu() for p in predictions])
        matched = torch.cat([_match({k: v.detach().cpu() for k, v in p.items()}, t, label, iou)
                             for p, t in zip(predictions, targets)])
        positives = sum(int((t["labels"] == label).sum()) for t in targets)
        result[f"AP_{label}"] = average_precision(scores, matched, positives)
    result["mAP"] = sum(result.values()) / len(labels) if labels else 0.0
    return result


def coco_metrics(predictions: Detections, targets: Detections) -> dict[str, float]:
    """COCO's box metrics (``AP`` at IoU .50:.95, ``AP50``, ``AP75``, ``APs``/``APm``/``APl``) by pycocotools.

    Raises:
        MissingDependencyError: pycocotools is not installed.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise MissingDependencyError("COCO metrics need pycocotools: pip install pycocotools") from None
    images, annotations, detections = [], [], []
    for image_id, (pred, truth) in enumerate(zip(predictions, targets), start=1):
        images.append({"id": image_id})
        for box, label in zip(truth["boxes"].tolist(), truth["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label, "iscrowd": 0,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                "area": (box[2] - box[0]) * (box[3] - box[1])})
        for box, label, score in zip(pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist()):
            detections.append({"image_id": image_id, "category_id": label, "score": score,
                               "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    truth_api = COCO()
    truth_api.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c} for c in sorted({a["category_id"] for a in annotations})]}
    truth_api.createIndex()
    evaluation = COCOeval(truth_api, truth_api.loadRes(detections) if detections else COCO(), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), map(float, evaluation.stats[:6])))
