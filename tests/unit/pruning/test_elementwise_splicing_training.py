"""SplicingPruner in a training loop with soft masks: a pruned weight that grows back is re-spliced."""
import pytest
import torch

from distiller.policy import PruningPolicy
from distiller.pruning import SplicingPruner
from distiller.scheduler import CompressionScheduler


def test_pruned_weight_is_spliced_back_when_its_unmasked_copy_grows():
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.05, 1.0, -1.0]]))
    # base = mean|w| = 0.6833 -> prune below 0.3417, splice at 0.6833 and above
    pruner = SplicingPruner("splice", {"weight": 0.0}, low_thresh_mult=0.5, hi_thresh_mult=1.0)
    scheduler = CompressionScheduler(model)
    args = {"mask_on_forward_only": True, "use_double_copies": True, "mini_batch_pruning_frequency": 1}
    scheduler.add_policy(PruningPolicy(pruner, args), starting_epoch=0, ending_epoch=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.tensor([[1.0, 0.0, 0.0]])  # d(-y)/dw0 = -1: each step grows the unmasked w0 by 0.5
    first_mask_entry = []
    scheduler.on_epoch_begin(0, optimizer)
    for step in range(3):
        scheduler.on_minibatch_begin(0, step, 3, optimizer)
        first_mask_entry.append(scheduler.zeros_mask_dict["weight"].mask[0, 0].item())
        loss = -model(x).sum()
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(0, step, 3, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(0, step, 3, optimizer)
    # w0: 0.05 (pruned) -> 0.55 (inside the band: stays pruned) -> 1.05 (above high: spliced back)
    assert first_mask_entry == [0.0, 0.0, 1.0]
    assert model.weight[0].tolist() == pytest.approx([1.55, 1.0, -1.0])
