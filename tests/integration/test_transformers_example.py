"""examples/transformers/compress_encoder.py end to end on a tiny encoder (a few seconds)."""
import os
import sys

import pytest

EXAMPLE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "transformers"))


@pytest.mark.slow
def test_head_and_ffn_pruning_thinning_kd_and_ptq_run_end_to_end(tmp_path):
    sys.path.insert(0, EXAMPLE_DIR)
    import compress_encoder
    args = compress_encoder.get_args_parser().parse_args([
        "--compress", os.path.join(EXAMPLE_DIR, "head_ffn_pruning.yaml"), "--epochs", "1", "--prune-epochs", "4",
        "--train-samples", "128", "--test-samples", "64", "--dim", "16", "--heads", "4", "--ffn", "32",
        "--layers", "1", "--latency-repeats", "2", "--out", str(tmp_path / "results.json")])
    results = compress_encoder.main(args)
    assert results["removed"] == {"heads": {"encoder.layers.0.self_attn": 2}, "neurons": {"encoder.layers.0": 16}}
    assert results["thinned_top1"] == results["pruned_masked_top1"]       # thinning changes no prediction
    assert results["thinned_params"] < results["dense_params"]
    for key in ("dense_top1", "kd_thinned_top1", "dense_int8_top1", "thinned_int8_top1"):
        assert 0 <= results[key] <= 100
    assert set(results["latency_ms"]) == {"dense", "thinned", "torch_fused_dense"}
    assert (tmp_path / "results.json").exists()
