"""The collectives that keep distributed compression runs identical on every process, in 2-4 gloo processes;
and the pieces that need no process group (sharded sampling, the mask-change trigger)."""
import os
import sys

import pytest
import torch

from distiller import CompressionScheduler
from distiller.apputils import distributed as D
from distiller.apputils.data_loaders import EpochSubsetSampler
from distiller.testing import TinyCNN
from distiller.testing.distributed import run_in_gloo_processes

sys.path.insert(0, os.path.dirname(__file__))  # spawned processes import the checks by module name
import collective_checks  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_collectives_in_gloo_processes(world_size, tmp_path):
    run_in_gloo_processes(collective_checks.run_all, world_size, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["calls.0"]  # on_main_process ran the function on rank 0 only


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_batches_together_are_the_one_process_batches(world_size):
    base = EpochSubsetSampler(range(50), fraction=0.9, seed=3)  # 45 samples
    local_batch = 4
    base.set_epoch(2)
    single = list(base)
    shards = []
    for rank in range(world_size):
        sampler = D.ShardedSampler(EpochSubsetSampler(range(50), fraction=0.9, seed=3), rank, world_size, pad=True)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert len({len(shard) for shard in shards}) == 1  # every rank runs the same number of steps
    global_batch = local_batch * world_size
    for k in range(len(single) // global_batch):
        together = sorted(i for shard in shards for i in shard[k * local_batch:(k + 1) * local_batch])
        assert together == sorted(single[k * global_batch:(k + 1) * global_batch])


def test_evaluation_shards_count_every_sample_once():
    base = EpochSubsetSampler(range(11), shuffle=False)
    shards = [list(D.ShardedSampler(base, rank, 3, pad=False)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    assert [len(D.ShardedSampler(base, rank, 3, pad=False)) for rank in range(3)] == [4, 4, 3]


def test_mask_broadcaster_sends_only_after_mask_changes(monkeypatch):
    model = TinyCNN()
    scheduler = CompressionScheduler(model)
    sent = []
    monkeypatch.setattr(D, "broadcast_masks", lambda s: sent.append(s.zeros_mask_dict.version))
    hook = D.MaskBroadcaster()
    hook(scheduler)
    hook(scheduler)
    assert len(sent) == 1
    scheduler.zeros_mask_dict["conv1.weight"].mask = torch.ones_like(model.conv1.weight)
    hook(scheduler)
    hook(scheduler)
    assert len(sent) == 2


def test_outside_a_process_group_the_collectives_change_nothing():
    values = torch.arange(3.0)
    D.all_reduce_sum_([values])
    D.broadcast_tensors_([values])
    assert values.tolist() == [0.0, 1.0, 2.0]
    assert (D.get_rank(), D.get_world_size(), D.is_main_process()) == (0, 1, True)
    assert D.on_main_process(lambda: "ran")() == "ran"
