#!/usr/bin/env python3
"""AGP pruning of a torchvision Faster R-CNN / Mask R-CNN backbone, driven by a YAML schedule.

Trains the detector (random initialisation: no weights can be downloaded here), evaluates it, then prunes and
fine-tunes it under ``--compress`` with distiller's CompressionScheduler and evaluates again. Data: generated
shapes images by default, or a COCO-format ``--data`` directory (needs pycocotools). Metrics: COCO's (AP at
IoU .50:.95, AP50, ...) when pycocotools is installed, and always the built-in AP@0.5 (see detection_ap.py).

Usage (from the repository root)::

    python examples/object_detection_compression/compress_detector.py \\
        --compress examples/object_detection_compression/agp_backbone.yaml
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import distiller
from distiller.apputils.app_runner import report_results
from distiller.errors import ArgumentError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detection_ap import BUILTIN_AP_LABEL, ap50, coco_metrics  # noqa: E402
from shapes_data import SHAPE_CLASSES, ShapesDataset, coco_dataset, collate  # noqa: E402

#: Architectures built here on a ResNet-18 FPN backbone (BatchNorm, trainable from scratch, small anchors).
RESNET18_ARCHS = ("fasterrcnn_resnet18_fpn", "maskrcnn_resnet18_fpn")
#: torchvision's own builders.
TORCHVISION_ARCHS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                     "fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compress", required=True, help="YAML schedule of the pruning fine-tune")
    parser.add_argument("--arch", default="fasterrcnn_resnet18_fpn", choices=RESNET18_ARCHS + TORCHVISION_ARCHS)
    parser.add_argument("--data", default=None, help="COCO-format directory (annotations.json + images/)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including the background (default: 3 for shapes; required with --data)")
    parser.add_argument("--train-images", type=int, default=96, help="shapes images (or first N of --data)")
    parser.add_argument("--test-images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=5, help="pruning + fine-tuning epochs")
    parser.add_argument("-b", "--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON to this file")
    return parser


def build_detector(arch: str, num_classes: int, image_size: int) -> nn.Module:
    """A randomly initialised detector resizing images to ``image_size``."""
    from torchvision.models import get_model
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    size = dict(min_size=image_size, max_size=image_size)
    if arch in RESNET18_ARCHS:
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                       trainable_layers=5)
        anchors = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)
        detector = MaskRCNN if arch.startswith("maskrcnn") else FasterRCNN
        # few objects per small image: fewer proposals and sampled RoIs than COCO's defaults (CPU time)
        few = dict(rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
                   rpn_post_nms_top_n_test=100, box_batch_size_per_image=64, box_detections_per_img=20)
        return detector(backbone, num_classes=num_classes, rpn_anchor_generator=anchors, **size, **few)
    return get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes, **size)


def datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset, int]:
    """Training and test sets and the number of classes (with the background)."""
    if args.data is None:
        return (ShapesDataset(args.train_images, args.image_size, seed=args.seed),
                ShapesDataset(args.test_images, args.image_size, seed=args.seed + 1),
                args.num_classes or len(SHAPE_CLASSES) + 1)
    if args.arch.startswith("maskrcnn"):
        raise ArgumentError("--data reads COCO boxes only; use a fasterrcnn_* --arch with it")
    if args.num_classes is None:
        raise ArgumentError("--data needs --num-classes (the largest category id + 1)")
    data = coco_dataset(args.data)
    split = len(data) - min(args.test_images, len(data) // 5)
    return Subset(data, range(min(split, args.train_images))), Subset(data, range(split, len(data))), args.num_classes


def train(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, epochs: int,
          scheduler: Optional[distiller.CompressionScheduler] = None) -> None:
    """Training epochs calling the scheduler's callbacks; the loss is the sum of the detector's losses."""
    steps = len(loader)
    for epoch in range(epochs):
        model.train()
        if scheduler is not None:
            scheduler.on_epoch_begin(epoch, optimizer)
        for step, (images, targets) in enumerate(loader):
            if scheduler is not None:
                scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
            loss = sum(model(images, targets).values())
            if scheduler is not None:
                loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            if scheduler is not None:
                scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
            optimizer.step()
            if scheduler is not None:
                scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        if scheduler is not None:
            scheduler.on_epoch_end(epoch, optimizer)
        print(f"epoch {epoch}: loss {float(loss.detach()):.3f}", flush=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, Any]:
    """The built-in AP@0.5 and, with pycocotools, COCO's metrics."""
    model.eval()
    predictions, targets = [], []
    for images, batch_targets in loader:
        predictions += model(images)
        targets += batch_targets
    metrics: dict[str, Any] = {BUILTIN_AP_LABEL: ap50(predictions, targets)}
    try:
        metrics["coco"] = coco_metrics(predictions, targets)
    except distiller.MissingDependencyError as err:
        metrics["coco"] = f"not computed: {err}"
    return metrics


def backbone_sparsity(model: nn.Module) -> float:
    """Percent of zero weights among the backbone's convolution weights."""
    weights = [m.weight for name, m in model.named_modules() if name.startswith("backbone") and
               isinstance(m, nn.Conv2d)]
    return 100.0 * sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def main(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    train_set, test_set, num_classes = datasets(args)
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, collate_fn=collate, generator=generator)
    test_loader = DataLoader(test_set, args.batch_size, collate_fn=collate)
    model = build_detector(args.arch, num_classes, args.image_size)
    start = time.time()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    train(model, train_loader, optimizer, args.epochs)
    results: dict[str, Any] = {"dense": evaluate(model, test_loader),
                               "dense_backbone_sparsity": backbone_sparsity(model)}

    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr / 2, momentum=0.9, weight_decay=1e-4)
    scheduler = distiller.file_config(model, optimizer, args.compress)
    train(model, train_loader, optimizer, args.prune_epochs, scheduler)
    results["pruned"] = evaluate(model, test_loader)
    results["pruned_backbone_sparsity"] = backbone_sparsity(model)
    results["wall_seconds"] = time.time() - start
    report_results(results, args, args.out)
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
