"""benchmarks/bench_gpu.py imports everything it uses and, without CUDA, says so and exits with status 0."""
import importlib
import json
import os
import sys

import pytest
import torch

BENCHMARKS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "benchmarks"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the real benchmark")
def test_bench_gpu_skips_cleanly_without_cuda(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)
    monkeypatch.delitem(sys.modules, "bench_gpu", raising=False)
    bench_gpu = importlib.import_module("bench_gpu")
    assert bench_gpu.main(bench_gpu.get_args_parser().parse_args([])) == 0
    assert json.loads(capsys.readouterr().out) == {"bench": "gpu", "skipped": "no CUDA device: nothing measured"}
