"""Checks run inside each gloo process started by test_collectives.py (importable by name, as spawned processes
need). Each check asserts; a failing assertion fails the test through the process's exception."""
import copy
import os

import torch
import torch.distributed as dist

from distiller import CompressionScheduler
from distiller.apputils import distributed as D
from distiller.apputils.classifier_reports import RunningScores
from distiller.policy import ScheduledTrainingPolicy
from distiller.pruning.activation_stats import ActivationStatsCollector
from distiller.testing import TinyCNN


def _rank_model(rank: int) -> tuple[TinyCNN, CompressionScheduler]:
    """A TinyCNN with rank-specific weights and masks: rank 0 masks conv1 (with an expanded filter mask, as the
    structure pruners make) and fc; every other rank masks conv2 instead of fc, with other filters."""
    torch.manual_seed(100 + rank)
    model = TinyCNN()
    scheduler = CompressionScheduler(model)
    generator = torch.Generator().manual_seed(rank)
    keep = torch.rand(8, generator=generator) > 0.5
    scheduler.zeros_mask_dict["conv1.weight"].mask = keep.view(8, 1, 1, 1).expand_as(model.conv1.weight)
    other = "fc.weight" if rank == 0 else "conv2.weight"
    scheduler.zeros_mask_dict[other].mask = torch.rand(model.get_parameter(other).shape, generator=generator) > 0.3
    scheduler.mask_all_weights()
    return model, scheduler


def check_broadcast_masks(rank: int, world_size: int) -> None:
    model, scheduler = _rank_model(rank)
    unmasked_before = model.bn1.weight.detach().clone()
    D.broadcast_masks(scheduler)
    reference, reference_scheduler = _rank_model(0)
    for name, param in model.named_parameters():
        expected = reference_scheduler.zeros_mask_dict[name].mask
        mask = scheduler.zeros_mask_dict[name].mask
        assert (mask is None) == (expected is None), (rank, name)
        if expected is not None:
            assert torch.equal(mask.bool(), expected.bool()), (rank, name)
            assert torch.equal(param, reference.get_parameter(name)), (rank, name)  # rank 0's masked weights
    assert torch.equal(model.bn1.weight, unmasked_before)  # parameters without masks are DDP's business


def check_broadcast_refuses_diverged_models(rank: int, world_size: int) -> None:
    model, scheduler = _rank_model(0)
    if rank == world_size - 1:  # this rank "thinned" differently: conv1 lost a filter
        model.conv1.weight = torch.nn.Parameter(model.conv1.weight.detach()[:7].clone())
        scheduler.zeros_mask_dict["conv1.weight"].mask = None
    try:
        D.broadcast_masks(scheduler)
    except RuntimeError as err:
        text = str(err)
        assert "diverged" in text, text
        assert ("'conv1.weight'" in text) == (rank == world_size - 1), text
    else:
        raise AssertionError(f"rank {rank}: a diverged model was not reported")


def check_reductions(rank: int, world_size: int, out_dir: str) -> None:
    floats, ints = torch.full((3,), float(rank + 1)), torch.tensor([rank, 10 * rank], dtype=torch.int64)
    D.all_reduce_sum_([floats, ints])
    total = sum(range(1, world_size + 1))
    assert torch.equal(floats, torch.full((3,), float(total)))
    assert ints.tolist() == [total - world_size, 10 * (total - world_size)]

    scores = RunningScores()  # rank r saw r + 1 samples, all right at top-1, loss 1.0 each
    logits = torch.eye(10)[: rank + 1]
    scores.update(logits, torch.arange(rank + 1), torch.tensor(1.0))
    reduced = D.all_reduce_scores(scores).values()
    assert reduced == {"Loss": 1.0, "Top1": 100.0, "Top5": 100.0}, reduced
    assert D.all_reduce_scores(scores).samples == total

    assert D.gather_lists([rank] * (rank + 1)) == [r for r in range(world_size) for _ in range(r + 1)]

    model = TinyCNN()
    model.bn1.running_mean.fill_(rank)
    D.broadcast_buffers(model)
    assert torch.equal(model.bn1.running_mean, torch.zeros(8))

    calls_file = os.path.join(out_dir, f"calls.{rank}")

    def write_once() -> str:
        with open(calls_file, "w") as f:
            f.write("written")
        return f"written by rank {D.get_rank()}"

    assert D.on_main_process(write_once)() == "written by rank 0"
    assert os.path.exists(calls_file) == (rank == 0)


def check_activation_statistics_cover_every_shard(rank: int, world_size: int) -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    one_process = copy.deepcopy(model)
    shards = torch.randn(world_size, 3, 3, 8, 8)  # rank r's data: shards[r]
    collector = ActivationStatsCollector(model, ["conv1", "conv2"], "apoz")
    whole = ActivationStatsCollector(one_process, ["conv1", "conv2"], "apoz")
    with torch.no_grad():
        model(shards[rank])
        one_process(shards.flatten(0, 1))  # what one process sees: every shard
    for name in ("conv1", "conv2"):
        expected = whole._sums[name] / whole._counts[name]  # (its statistic_of would sum over the processes too)
        torch.testing.assert_close(collector.statistic_of(name), expected)


class _RankDependentPruner(ScheduledTrainingPolicy):
    """Masks a rank-dependent random half of conv2 at epoch begin and of fc at mini-batch end (what rankings by
    each rank's own data could do), applying them to the weights as pruners do."""

    def _mask(self, model, zeros_mask_dict, name, salt):
        generator = torch.Generator().manual_seed(1000 * salt + D.get_rank())
        zeros_mask_dict[name].mask = torch.rand(model.get_parameter(name).shape, generator=generator) > 0.5
        zeros_mask_dict[name].mask_tensor(model.get_parameter(name))

    def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):
        self._mask(model, zeros_mask_dict, "conv2.weight", 1)

    def on_minibatch_end(self, model, epoch, minibatch_id, minibatches_per_epoch, zeros_mask_dict, optimizer):
        self._mask(model, zeros_mask_dict, "fc.weight", 2 + minibatch_id)


def check_scheduler_callbacks_keep_rank_0_masks(rank: int, world_size: int) -> None:
    torch.manual_seed(7)  # the same initial weights everywhere, as DDP makes them
    model = TinyCNN()
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(_RankDependentPruner(), epochs=[0])
    scheduler.mask_sync = D.MaskBroadcaster()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler.on_epoch_begin(0, optimizer)
    for step in range(2):
        scheduler.on_minibatch_begin(0, step, 2, optimizer)
        scheduler.on_minibatch_end(0, step, 2, optimizer)
    theirs = D.broadcast_object({name: (m.mask.bool().clone(), model.get_parameter(name).detach().clone())
                                 for name, m in scheduler.zeros_mask_dict.items() if m.mask is not None})
    assert sorted(theirs) == ["conv2.weight", "fc.weight"]
    for name, (mask, weight) in theirs.items():
        assert torch.equal(scheduler.zeros_mask_dict[name].mask.bool(), mask), (rank, name)
        assert torch.equal(model.get_parameter(name), weight), (rank, name)


def run_all(rank: int, world_size: int, out_dir: str) -> None:
    """All the checks, in one process group (starting processes is what costs time)."""
    info = D.init_from_env(use_cuda=False)
    assert info is not None and (info.rank, info.world_size, info.backend) == (rank, world_size, "gloo")
    assert D.is_distributed() and D.get_world_size() == world_size and D.is_main_process() == (rank == 0)
    check_broadcast_masks(rank, world_size)
    check_broadcast_refuses_diverged_models(rank, world_size)
    check_reductions(rank, world_size, out_dir)
    check_activation_statistics_cover_every_shard(rank, world_size)
    check_scheduler_callbacks_keep_rank_0_masks(rank, world_size)
    dist.barrier()
