"""compress_classifier.py --benchmark: a filter-pruned, thinned run on digits ends with the dense versus
compressed table (latency, throughput, parameters, MACs, file size) in its log and benchmark.csv."""
import csv
import os

import pytest

FAST = ["-a", "simplenet_cifar", "-b", "32", "--etrs", "0.1", "--etes", "0.1", "--det", "-p", "5"]
FILTERS = """
version: 1
pruners:
  filters:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [conv1.weight, conv2.weight]
policies:
  - pruner: {instance_name: filters}
    epochs: [0]
"""

pytestmark = pytest.mark.slow


def test_benchmark_compares_the_dense_architecture_with_the_thinned_model(run_classifier, tmp_path):
    schedule = tmp_path / "filters.yaml"
    schedule.write_text(FILTERS)
    run = run_classifier(*FAST, "--epochs", 1, "--compress", schedule, "--thinnify", "--benchmark", "-o", tmp_path)
    assert run.status == 0, run.stderr
    with open(os.path.join(run.run_dir, "benchmark.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], int(r["batch_size"])) for r in rows] == [("dense", 1), ("compressed", 1), ("dense", 32),
                                                                  ("compressed", 32)]
    dense, thinned = rows[0], rows[1]
    assert int(thinned["params"]) < int(dense["params"])
    assert int(thinned["macs_per_sample"]) < int(dense["macs_per_sample"])
    assert 0 < float(thinned["size_ratio"]) < 1 and float(thinned["latency_ms"]) > 0
    with open(os.path.join(run.run_dir, os.path.basename(run.run_dir) + ".log")) as f:
        assert "Dense versus compressed (simplenet_cifar on cpu)" in f.read()
