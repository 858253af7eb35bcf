"""The example's built-in AP@0.5 on hand-made boxes, and its COCO-metrics path when pycocotools is there."""
import pytest
import torch

from detection_ap import ap50, average_precision, coco_metrics
from distiller.errors import MissingDependencyError


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_hand_computed_ap_with_a_false_positive_a_duplicate_and_a_missed_class():
    targets = [{"boxes": _boxes([0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]), "labels": torch.tensor([1, 1, 2])}]
    predictions = [{"boxes": _boxes([0, 0, 10, 10], [70, 70, 80, 80], [20, 20, 30, 26], [0, 0, 10, 10]),
                    "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([1, 1, 1, 1])}]
    # class 1 in score order: TP (IoU 1), FP, TP (IoU 0.6), FP (duplicate): precision 1, 1/2, 2/3, 1/2 at
    # recall 1/2, 1/2, 1, 1 -> envelope area 0.5 * 1 + 0.5 * 2/3. Class 2: no detection -> 0.
    result = ap50(predictions, targets)
    assert result["AP_1"] == pytest.approx(0.5 + 1 / 3)
    assert result["AP_2"] == 0.0
    assert result["mAP"] == pytest.approx((0.5 + 1 / 3) / 2)


def test_iou_threshold_and_per_image_matching():
    targets = [{"boxes": _boxes([20, 20, 30, 30]), "labels": torch.tensor([1])},
               {"boxes": _boxes([0, 0, 10, 10]), "labels": torch.tensor([1])}]
    predictions = [{"boxes": _boxes([20, 20, 30, 24.5]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])},
                   {"boxes": _boxes([20, 20, 30, 30]), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}]
    # IoU 0.45 in image 0, and image 1's detection sits on image 0's object: nothing matches
    assert ap50(predictions, targets)["AP_1"] == 0.0
    assert ap50(predictions, targets, iou=0.4)["AP_1"] == pytest.approx(0.5)


def test_average_precision_of_a_perfect_ranking_is_one_and_needs_objects():
    assert average_precision(torch.tensor([0.3, 0.9]), torch.tensor([True, True]), 2) == 1.0
    with pytest.raises(ValueError):
        average_precision(torch.tensor([0.3]), torch.tensor([False]), 0)


def test_coco_metrics_need_pycocotools_or_match_a_perfect_detector():
    targets = [{"boxes": _boxes([0, 0, 40, 40]), "labels": torch.tensor([1])}]
    predictions = [{"boxes": _boxes([0, 0, 40, 40]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install pycocotools"):
            coco_metrics(predictions, targets)
        return
    assert coco_metrics(predictions, targets)["AP50"] == pytest.approx(1.0)
