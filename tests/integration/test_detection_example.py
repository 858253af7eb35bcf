"""examples/object_detection_compression/compress_detector.py end to end on a few tiny shapes images."""
import os
import sys

import pytest

EXAMPLE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                           "object_detection_compression"))


@pytest.mark.slow
def test_dense_training_then_scheduled_agp_of_the_backbone(tmp_path):
    sys.path.insert(0, EXAMPLE_DIR)
    import compress_detector
    from detection_ap import BUILTIN_AP_LABEL
    args = compress_detector.get_args_parser().parse_args([
        "--compress", os.path.join(EXAMPLE_DIR, "agp_backbone.yaml"), "--train-images", "4", "--test-images", "2",
        "--image-size", "48", "--epochs", "1", "--prune-epochs", "4", "-b", "2", "--out", str(tmp_path / "r.json")])
    results = compress_detector.main(args)
    assert results["dense_backbone_sparsity"] == 0
    assert 40 < results["pruned_backbone_sparsity"] < 60     # 60% of the residual blocks' convolutions
    assert 0 <= results["pruned"][BUILTIN_AP_LABEL]["mAP"] <= 1
    assert (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_mask_rcnn_needs_masks_that_coco_boxes_do_not_give(tmp_path):
    sys.path.insert(0, EXAMPLE_DIR)
    import compress_detector
    from distiller.errors import ArgumentError
    args = compress_detector.get_args_parser().parse_args([
        "--compress", os.path.join(EXAMPLE_DIR, "agp_backbone.yaml"), "--arch", "maskrcnn_resnet18_fpn",
        "--data", str(tmp_path)])
    with pytest.raises(ArgumentError, match="fasterrcnn"):
        compress_detector.main(args)
