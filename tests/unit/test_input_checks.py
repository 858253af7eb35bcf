"""Library input checks raise the user-error family, so applications report bad input in one line (exit 2)
and never mistake it for a bug; the errors stay ValueErrors/FileNotFoundErrors for existing handlers."""
import pytest
import torch

import distiller
from distiller import lr_schedulers, norms, thresholding
from distiller.data_loggers import load_quant_stats
from distiller.errors import ArgumentError, InputFileError
from distiller.metrics.sparsity import sparsity_matrix
from distiller.policy import PruningPolicy
from distiller.pruning import AutomatedGradualPruner, L1RankedStructureParameterPruner, agp_target_sparsity
from distiller.pruning.masks import pruned_element_count
from distiller.registry import PRUNERS


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda: AutomatedGradualPruner("p", 0.1, 1.5, ["w"]),
     r"argument 'final_sparsity' expects a number in \[0, 1\), got 1.5"),
    (lambda: AutomatedGradualPruner("p", 0.5, 0.1, ["w"]), "below initial_sparsity"),
    (lambda: agp_target_sparsity(0.1, 0.5, 0, 1, 1, 0), "at least two pruning epochs"),
    (lambda: L1RankedStructureParameterPruner("p", "Kernelz", 0.5, ["w"]), "unknown group_type 'Kernelz'"),
    (lambda: L1RankedStructureParameterPruner("p", "Filters", 0.5, ["w"], group_size=0),
     "argument 'group_size' expects an integer > 0, got 0"),
    (lambda: pruned_element_count(10, 1.5), "outside \\[0, 1\\]"),
    (lambda: thresholding.group_scores(torch.ones(2, 2), "Rows", "L1"), "unknown threshold_criteria 'L1'"),
    (lambda: norms.num_structures_to_prune(8, 2.0), "outside \\[0, 1\\]"),
    (lambda: lr_schedulers.MultiStepMultiGammaLR(_optimizer(), [3, 1], [0.1, 0.1]), "milestones must be increasing"),
    (lambda: sparsity_matrix(torch.ones(2, 2), dim=2), "dim must be 0"),
    (lambda: PruningPolicy(AutomatedGradualPruner("p", 0.1, 0.5, ["w"]), {"keep_masks": True}),
     "pruning policy: unknown argument 'keep_masks'"),
    (lambda: distiller.CompressionScheduler(torch.nn.Linear(2, 2)).add_policy(
        PruningPolicy(AutomatedGradualPruner("p", 0.1, 0.5, ["weight"]), None), starting_epoch=3, ending_epoch=3),
     "must be greater than starting_epoch"),
    (lambda: load_quant_stats({"fc": {"output": {"min": 0}}}), "lacks"),
    (lambda: PRUNERS.register(type("AutomatedGradualPruner", (), {})), "already registered"),
    (lambda: distiller.models.create_model(False, "digits", "resnet20_cifr"), "unknown architecture"),
])
def test_bad_arguments_raise_argument_error(call, message):
    with pytest.raises(ArgumentError, match=message) as info:
        call()
    assert isinstance(info.value, ValueError)


def test_missing_calibration_statistics_file_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist") as info:
        load_quant_stats(str(tmp_path / "stats.yaml"))
    assert isinstance(info.value, FileNotFoundError)
