"""The structure-pruning example schedules load on resnet20_cifar and run their first, last and thinning epochs."""
import glob
import os

import pytest
import torch

import distiller
import distiller.regularization  # noqa: F401 - registers the regularizers
import distiller.thinning  # noqa: F401 - registers the thinning extensions
from distiller.models import create_model
from distiller.testing import train_with_scheduler

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCHEDULES = sorted(
    glob.glob(os.path.join(ROOT, "examples", "agp-pruning", "*filters*.yaml"))
    + [path for folder in ("pruning_filters_for_efficient_convnets", "network_trimming", "ssl", "hybrid",
                           "drop_filter")
       for path in glob.glob(os.path.join(ROOT, "examples", folder, "*.yaml"))])


def test_the_example_schedules_exist():
    assert len(SCHEDULES) >= 12


@pytest.mark.parametrize("path", SCHEDULES, ids=[os.path.relpath(p, ROOT) for p in SCHEDULES])
def test_example_schedule_runs_on_resnet20(path):
    with open(path) as text:
        header = text.read()
    assert "compress_classifier.py --arch resnet20_cifar" in header
    assert "# Result on digits" in header and "(pending)" not in header, "the header needs the measured result"
    torch.manual_seed(0)
    model = create_model(False, "cifar10", "resnet20_cifar", device_ids=-1)
    params_before = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = distiller.file_config(model, optimizer, path)
    compression = [epoch for epoch, policies in scheduler.policies.items()
                   if any(not isinstance(p, distiller.LRPolicy) for p in policies)]
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 32, 32, generator=generator), torch.randint(0, 10, (4,), generator=generator))
               for _ in range(2)]
    thinning = [epoch for epoch, policies in scheduler.policies.items()
                if any(isinstance(p, distiller.thinning.StructureRemover) for p in policies)]
    for epoch in sorted({min(compression), max(compression), *thinning}):
        loss = train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=epoch)
        assert torch.isfinite(loss)
    pruned = [masker.mask for masker in scheduler.zeros_mask_dict.values() if masker.mask is not None]
    assert all(mask.shape == param.shape for (name, param) in model.named_parameters()
               for mask in [scheduler.zeros_mask_dict[name].mask] if mask is not None)
    if "Ranked" in header:       # ranked pruners prune at their first step (thresholds may not, yet)
        if "class: FilterRemover" in header:
            assert sum(p.numel() for p in model.parameters()) < params_before, "nothing was thinned"
        else:
            assert any((mask == 0).any() for mask in pruned), "the schedule pruned nothing"
