"""The pruning policy's fold_batchnorm argument (Distiller's): rank weights as if their BatchNorm were folded."""
import pytest
import torch
from torch import nn

import distiller


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _model():
    model = ConvBN()
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1, 1))
        model.bn.weight.copy_(torch.tensor([4.0, 1.0, 1.0, 0.1]))  # folded magnitudes: 4, 2, 3, 0.4
    return model


def _pruned_filters(args):
    model = _model()
    schedule = {"pruners": {"p": {"class": "L1RankedStructureParameterPruner", "group_type": "Filters",
                                  "desired_sparsity": 0.5, "weights": ["conv.weight"]}},
                "policies": [{"pruner": {"instance_name": "p", "args": args}, "epochs": [0]}]}
    scheduler = distiller.config.dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule)
    scheduler.on_epoch_begin(0)
    mask = scheduler.zeros_mask_dict["conv.weight"].mask
    assert torch.equal(model.conv.weight.flatten() == 0, mask.flatten() == 0)  # the real weight is masked
    return sorted((mask.flatten() == 0).nonzero().flatten().tolist())


def test_fold_batchnorm_ranks_filters_by_their_folded_magnitude():
    assert _pruned_filters({}) == [0, 1]                         # smallest raw filters
    assert _pruned_filters({"fold_batchnorm": True}) == [1, 3]   # smallest after BatchNorm's scaling


def test_fold_batchnorm_without_a_batchnorm_after_the_weights_is_an_error():
    model = _model()
    schedule = {"pruners": {"p": {"class": "L1RankedStructureParameterPruner", "group_type": "Rows",
                                  "desired_sparsity": 0.5, "weights": ["fc.weight"]}},
                "policies": [{"pruner": {"instance_name": "p", "args": {"fold_batchnorm": True}}, "epochs": [0]}]}
    with pytest.raises(distiller.ScheduleError, match="fold_batchnorm is set, but no BatchNorm directly follows"):
        distiller.config.dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule)
