"""Detection data: generated "shapes" images by default, COCO-format directories when given.

Shapes: each image holds one to three filled rectangles (label 1) and ellipses (label 2) of random sizes and
colours on a noisy background, with their boxes and masks; image ``i`` depends only on ``(seed, i)``.
COCO: ``DIR/annotations.json`` (COCO instances format) with the images under ``DIR/images/`` (or ``DIR``),
read by ``torchvision.datasets.CocoDetection`` (needs pycocotools).
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset

from distiller.errors import InputFileError, MissingDependencyError

__all__ = ["ShapesDataset", "SHAPE_CLASSES", "coco_dataset", "collate"]

#: Label -> name (0 is the background, as torchvision's detectors expect).
SHAPE_CLASSES = {1: "rectangle", 2: "ellipse"}


class ShapesDataset(Dataset):
    """``length`` generated images ``[3, size, size]`` in [0, 1] with targets ``{'boxes', 'labels', 'masks'}``.

    Args:
        length: number of images.
        size: image side in pixels.
        seed: base seed (image ``i`` uses ``seed * 1_000_003 + i``).
    """

    def __init__(self, length: int, size: int = 96, seed: int = 0) -> None:
        self.length, self.size, self.seed = length, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        size = self.size
        image = 0.4 + 0.2 * torch.rand(3, 1, 1, generator=g) + 0.05 * torch.randn(3, size, size, generator=g)
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        boxes, labels, masks = [], [], []
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            w, h = (torch.randint(size // 6, size // 2, (2,), generator=g)).tolist()
            x0 = int(torch.randint(0, size - w, (1,), generator=g))
            y0 = int(torch.randint(0, size - h, (1,), generator=g))
            label = int(torch.randint(1, 3, (1,), generator=g))
            if label == 1:
                mask = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
            else:
                cx, cy = x0 + (w - 1) / 2, y0 + (h - 1) / 2
                mask = ((xs - cx) / (w / 2)) ** 2 + ((ys - cy) / (h / 2)) ** 2 <= 1
            colour = torch.rand(3, 1, 1, generator=g)
            image = torch.where(mask, colour.expand(3, size, size), image)
            for earlier in masks:                                     # later shapes cover earlier ones
                earlier &= ~mask
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(label)
            masks.append(mask)
        areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]
        keep = [i for i, mask in enumerate(masks) if mask.sum() > 0.3 * areas[i]]   # mostly visible shapes
        target = {"boxes": _tight_boxes([masks[i] for i in keep]), "labels": torch.tensor([labels[i] for i in keep]),
                  "masks": torch.stack([masks[i] for i in keep]).to(torch.uint8)}
        return image.clamp(0, 1), target


def _tight_boxes(masks: list[torch.Tensor]) -> torch.Tensor:
    """The ``[x1, y1, x2, y2]`` box around the visible pixels of each mask."""
    boxes = []
    for mask in masks:
        ys, xs = mask.nonzero(as_tuple=True)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
    return torch.tensor(boxes)


def coco_dataset(root: str) -> Dataset:
    """The COCO-format dataset in ``root`` as ``(image tensor, {'boxes', 'labels'})`` pairs (crowd boxes dropped).

    Raises:
        InputFileError: no ``annotations.json`` in ``root``.
        MissingDependencyError: pycocotools is not installed.
    """
    annotations = os.path.join(root, "annotations.json")
    if not os.path.isfile(annotations):
        raise InputFileError(f"{root}: no annotations.json (COCO instances format) in the --data directory")
    images = os.path.join(root, "images") if os.path.isdir(os.path.join(root, "images")) else root
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise MissingDependencyError("reading COCO annotations needs pycocotools: pip install pycocotools") from None
    from torchvision.datasets import CocoDetection
    from torchvision.transforms.functional import pil_to_tensor

    def to_target(annotations: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        objects = [a for a in annotations if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]                                  # xywh -> xyxy
        return {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in objects], dtype=torch.int64)}

    return CocoDetection(images, annotations, transform=lambda image: pil_to_tensor(image.convert("RGB")) / 255.0,
                         target_transform=to_target)


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Detection batches are lists (images of different sizes and numbers of objects)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
