"""Calibration (and activation) statistics gathered by 2-3 gloo processes on their shards and combined over
the group: identical on every process and equal to one process's over all the data."""
import os
import sys

import pytest

from distiller.testing.distributed import run_in_gloo_processes

sys.path.insert(0, os.path.dirname(__file__))  # spawned processes import the checks by module name
import stats_checks  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3])
def test_statistics_combined_over_gloo_processes(world_size, tmp_path):
    run_in_gloo_processes(stats_checks.run_all, world_size, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["portion", "rank0"][world_size - 2:]  # rank 0 alone wrote statistics
    assert os.listdir(tmp_path / "rank0") == ["acts_quantization_stats.yaml"]
