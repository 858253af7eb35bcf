"""benchmarks/bench_fast_linear.py runs on the CPU and prints valid JSON: the machine, then one row per layer and
method with the decision (FP8 reported unavailable there)."""
import importlib
import json
import os
import sys

import pytest

BENCHMARKS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "benchmarks"))


def test_cpu_run_prints_a_row_per_layer_and_method(monkeypatch, capsys):
    pytest.importorskip("torchao")
    monkeypatch.syspath_prepend(BENCHMARKS)
    monkeypatch.delitem(sys.modules, "bench_fast_linear", raising=False)
    bench = importlib.import_module("bench_fast_linear")
    args = bench.get_args_parser().parse_args(["--device", "cpu", "--dtype", "float32", "--shapes", "32x48", "64X16",
                                               "--tokens", "4", "--rounds", "1", "--warmup", "0"])
    assert bench.main(args) == 0
    lines = [json.loads(line, parse_constant=pytest.fail) for line in capsys.readouterr().out.splitlines()]
    assert "machine" in lines[0]
    rows = lines[1:]
    assert [(r["shape"], r["method"]) for r in rows] == [(shape, method) for shape in ([32, 48], [64, 16])
                                                         for method in ("fp8", "fp8_per_row", "int8_weight_only")]
    for row in rows:
        assert row["input_shape"] == f"4x{row['shape'][0]}" and row["dense_ms"] > 0
        if row["method"] == "int8_weight_only":
            assert row["converted_ms"] > 0 and row["relative_error"] < 0.02
            assert row["decision"] == ("int8_weight_only" if row["outcome"] == "chosen" else "dense")
        else:
            assert row["outcome"].startswith("unavailable") and row["converted_ms"] is None


def test_a_malformed_shape_is_refused(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    bench = importlib.import_module("bench_fast_linear")
    with pytest.raises(SystemExit, match="'4096' is not IN x OUT"):
        bench.parse_shape("4096")
