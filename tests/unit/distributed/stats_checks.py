"""Checks run inside each gloo process started by test_distributed_stats.py (importable by name, as spawned
processes need): statistics that every process gathers on its shard of the data and combines over the group
equal those one process gathers on all the data, and are identical on every process."""
import argparse
import os

import torch

from distiller.apputils import distributed as D
from distiller.apputils.classifier_activations import create_activation_stats_collectors
from distiller.cli.quantization import _calibration_stats
from distiller.data_loggers import collect_quant_stats, collectors_context
from distiller.testing import TinyCNN, TinyResidualNet

#: The global batch size and the data: 23 samples, so that the last global batch is short.
GLOBAL_BATCH = 6
SAMPLES = 23


def _data() -> torch.Tensor:
    return torch.randn(SAMPLES, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 3 + 0.5


def global_batches(data: torch.Tensor) -> list[torch.Tensor]:
    return [data[start:start + GLOBAL_BATCH] for start in range(0, len(data), GLOBAL_BATCH)]


def shard_batches(data: torch.Tensor, rank: int, world_size: int) -> list[torch.Tensor]:
    """Rank ``rank``'s batches: every ``world_size``-th sample of each global batch (as the sharded loaders
    split them)."""
    return [batch[rank::world_size] for batch in global_batches(data) if len(batch[rank::world_size])]


def _run(batches: list[torch.Tensor]):
    def test_fn(model: torch.nn.Module) -> None:
        for batch in batches:
            model(batch)
    return test_fn


def check_calibration_statistics(rank: int, world_size: int, out_dir: str) -> None:
    torch.manual_seed(0)
    model = TinyResidualNet().eval()
    data = _data()
    if world_size > 2:  # the last rank's shard is empty: the others share the samples
        batches = shard_batches(data, rank, world_size - 1) if rank < world_size - 1 else []
    else:
        batches = shard_batches(data, rank, world_size)
    save_dir = os.path.join(out_dir, f"rank{rank}")
    combined = collect_quant_stats(model, _run(batches), save_dir=save_dir, combine_processes=True)
    single = collect_quant_stats(model, _run(global_batches(data)))

    assert list(combined) == list(single), (list(combined), list(single))
    for name, entry in single.items():
        records = [(f"{name}.inputs.{i}", r, combined[name]["inputs"][i]) for i, r in entry["inputs"].items()]
        records.append((f"{name}.output", entry["output"], combined[name]["output"]))
        for where, expected, record in records:
            assert sorted(record) == sorted(expected), where
            for key in ("min", "max", "shape", "total_numel"):  # extremes and counts: exact
                assert record[key] == expected[key], (where, key, record[key], expected[key])
            for key in ("avg_min", "avg_max", "mean", "std", "b"):  # sums of float32 batch sums: up to rounding
                torch.testing.assert_close(record[key], expected[key], rtol=1e-6, atol=1e-7, msg=f"{where} {key}")
    for other in D.gather_lists([combined]):  # bit for bit the same on every process
        assert other == combined


def check_calibration_portion_is_of_the_global_batches(rank: int, world_size: int, out_dir: str) -> None:
    """13 samples in global batches of 4 on two processes: rank 0's shard has 4 batches, rank 1's 3 (the last
    global batch holds one sample); 60% of the data's 4 batches is 3 batches on both ranks (not 2 on rank 1)."""
    if world_size != 2:
        return
    model, data = TinyCNN().eval(), _data()[:13]
    batches = [batch[rank::2] for batch in data.split(4) if len(batch[rank::2])]
    args = argparse.Namespace(qe_dynamic=False, qe_stats_file=None, qe_config_file=None, qe_calibration=0.6)
    stats = _calibration_stats(model, args, batches, lambda m, loader: _run(list(loader))(m), out_dir)
    assert stats["conv1"]["inputs"][0]["total_numel"] == 12 * 3 * 8 * 8  # the first 3 global batches


def check_activation_statistics(rank: int, world_size: int) -> None:
    torch.manual_seed(0)
    model, data = TinyCNN().eval(), _data()
    sharded, single = create_activation_stats_collectors(model, "test")["test"], \
        create_activation_stats_collectors(model, "test")["test"]
    with torch.no_grad():
        with collectors_context(sharded):
            _run(shard_batches(data, rank, world_size))(model)
        for collector in sharded.values():
            collector.combine_processes()
        with collectors_context(single):
            _run(global_batches(data))(model)
    for name, collector in sharded.items():
        combined, expected = collector.value(), single[name].value()
        assert list(combined) == list(expected), name
        if name == "records":  # per sample, in the one-process order
            for module, records in expected.items():
                assert combined[module]["shape"] == records["shape"], module  # the last (short) global batch's
                for key in collector.RECORDS:
                    assert len(combined[module][key]) == SAMPLES, (module, key)
                    torch.testing.assert_close(combined[module][key], records[key], rtol=1e-6, atol=1e-6)
            continue
        for module, value in expected.items():  # sample-weighted means over every sample
            torch.testing.assert_close(combined[module], value, rtol=1e-6, atol=1e-6, msg=f"{name} {module}")
        for other in D.gather_lists([combined]):  # bit for bit the same on every process
            assert other == combined, name
    try:
        sharded["sparsity_ofm"].combine_processes()
    except RuntimeError as err:
        assert "ran already" in str(err)
    else:
        raise AssertionError("combining twice was not refused")


def run_all(rank: int, world_size: int, out_dir: str) -> None:
    """All the checks, in one process group (starting processes is what costs time)."""
    D.init_from_env(use_cuda=False)
    check_calibration_statistics(rank, world_size, out_dir)
    check_calibration_portion_is_of_the_global_batches(rank, world_size, os.path.join(out_dir, "portion"))
    check_activation_statistics(rank, world_size)
