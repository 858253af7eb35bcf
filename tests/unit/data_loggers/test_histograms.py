"""Activation histograms: counts match torch.histc over the ranges of the stats pass and add up to the number
of values; the two-pass collect_histograms; saved files; bad input."""
import pytest
import torch
import yaml
from torch import nn

from distiller.data_loggers import (HISTOGRAMS_FILE_NAME, STATS_FILE_NAME, ActivationHistogramsCollector,
                                    collect_histograms, collect_quant_stats, collector_context)
from distiller.errors import ArgumentError

NBINS = 16


def _test_fn(batches, calls=None):
    def run(model):
        if calls is not None:
            calls.append(model)
        for images, _ in batches:
            model(images)
    return run


def _tensors_seen(model, module_name, batches):
    """The input and output of ``module_name`` over ``batches``, concatenated."""
    seen = {"input": [], "output": []}
    module = dict(model.named_modules())[module_name]

    def hook(m, inputs, output):
        seen["input"].append(inputs[0].detach().clone())
        seen["output"].append(output.detach().clone())
    handle = module.register_forward_hook(hook)
    with torch.no_grad():
        _test_fn(batches)(model.eval())
    handle.remove()
    return torch.cat(seen["input"]), torch.cat(seen["output"])


def test_counts_match_histc_over_the_collected_ranges(tiny_model, batches):
    stats = collect_quant_stats(tiny_model, _test_fn(batches))
    histograms = collect_histograms(tiny_model, _test_fn(batches), activation_stats=stats, nbins=NBINS)
    inputs, output = _tensors_seen(tiny_model, "conv2", batches)
    for tensor, histogram, record in ((inputs, histograms["conv2"]["inputs"][0], stats["conv2"]["inputs"][0]),
                                      (output, histograms["conv2"]["output"], stats["conv2"]["output"])):
        expected = torch.histc(tensor, bins=NBINS, min=record["min"], max=record["max"])
        assert torch.equal(histogram["hist"], expected.long())
        assert histogram["total_numel"] == tensor.numel() == int(histogram["hist"].sum())
        width = (record["max"] - record["min"]) / NBINS
        assert histogram["bin_centroids"][0].item() == pytest.approx(record["min"] + width / 2, rel=1e-5)
        assert histogram["bin_centroids"][-1].item() == pytest.approx(record["max"] - width / 2, rel=1e-5)
    assert list(histograms) == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "fc"]


def test_values_outside_the_range_count_in_the_edge_bins(tiny_model, batches):
    moments = {"avg_min": 0.0, "avg_max": 0.0, "mean": 0.0, "std": 0.0}
    stats = {"relu1": {"inputs": {0: {**moments, "min": -0.1, "max": 0.1}},
                       "output": {**moments, "min": 0.0, "max": 0.1}}}
    collector = ActivationHistogramsCollector(tiny_model, stats, classes=[nn.ReLU], nbins=4)
    with torch.no_grad(), collector_context(collector, ["relu1"]):
        _test_fn(batches)(tiny_model.eval())
    inputs, output = _tensors_seen(tiny_model, "relu1", batches)
    histogram = collector.value()["relu1"]["inputs"][0]
    assert int(histogram["hist"].sum()) == inputs.numel()
    assert int(histogram["hist"][0]) == int((inputs < -0.05).sum())
    assert int(histogram["hist"][-1]) == int((inputs >= 0.05).sum())
    assert torch.equal(collector.value()["relu1"]["output"]["hist"],
                       torch.histc(output.clamp(0, 0.1), bins=4, min=0, max=0.1).long())


def test_a_constant_activation_fills_one_bin():
    model = nn.Sequential(nn.ReLU())
    record = {"min": 0.0, "max": 0.0, "avg_min": 0.0, "avg_max": 0.0, "mean": 0.0, "std": 0.0}
    collector = ActivationHistogramsCollector(model, {"0": {"inputs": {0: record}, "output": record}}, nbins=5)
    with collector_context(collector):
        model(-torch.ones(2, 3))
    histogram = collector.value()["0"]["output"]
    assert histogram["hist"].tolist() == [0, 0, 6, 0, 0]
    assert histogram["bin_centroids"][2].item() == pytest.approx(0.0)


def test_collect_histograms_runs_two_passes_and_saves(tiny_model, batches, tmp_path):
    calls = []
    tiny_model.train()
    histograms = collect_histograms(tiny_model, _test_fn(batches, calls), save_dir=tmp_path,
                                    classes=[nn.Conv2d, nn.ReLU], nbins=NBINS)
    assert len(calls) == 3 and calls[-1] is tiny_model  # stats: two passes on a copy; histograms: the model
    assert tiny_model.training
    assert list(histograms) == ["conv1", "relu1", "conv2", "relu2"]
    saved = torch.load(tmp_path / HISTOGRAMS_FILE_NAME, weights_only=True)
    assert saved.keys() == histograms.keys()
    assert torch.equal(saved["relu2"]["output"]["hist"], histograms["relu2"]["output"]["hist"])
    assert saved["relu2"]["inputs"][0]["total_numel"] == histograms["relu2"]["inputs"][0]["total_numel"]
    ranges = yaml.safe_load((tmp_path / STATS_FILE_NAME).read_text())
    assert list(ranges) == ["conv1", "relu1", "conv2", "relu2"]


def test_given_ranges_skip_the_stats_pass(tiny_model, batches, tmp_path):
    stats_path = tmp_path / "ranges.yaml"
    collect_quant_stats(tiny_model, _test_fn(batches), save_dir=tmp_path)
    (tmp_path / STATS_FILE_NAME).rename(stats_path)
    calls = []
    histograms = collect_histograms(tiny_model, _test_fn(batches, calls), activation_stats=stats_path, nbins=NBINS)
    assert len(calls) == 1
    assert int(histograms["fc"]["output"]["hist"].sum()) == 3 * 8 * 10


def test_images_are_drawn_per_module(tiny_model, batches, tmp_path):
    stats = collect_quant_stats(tiny_model, _test_fn(batches), classes=[nn.ReLU])
    collector = ActivationHistogramsCollector(tiny_model, stats, classes=[nn.ReLU], nbins=NBINS,
                                              save_hist_imgs=True, hist_imgs_ext="png")
    with collector_context(collector):
        _test_fn(batches[:1])(tiny_model)
    collector.save(tmp_path / "hists.pt")
    images = sorted(p.name for p in (tmp_path / "histogram_imgs").iterdir())
    assert images == ["relu1.png", "relu2.png"]
    assert (tmp_path / "histogram_imgs" / "relu1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_module_without_a_range_names_it_and_the_fix(tiny_model, batches):
    stats = collect_quant_stats(tiny_model, _test_fn(batches))
    del stats["relu2"]
    collector = ActivationHistogramsCollector(tiny_model, stats, nbins=NBINS)
    with pytest.raises(ArgumentError, match="input 0 of module 'relu2'.*collect_quant_stats"):
        with collector_context(collector):
            _test_fn(batches)(tiny_model)
    assert sum(len(m._forward_pre_hooks) for m in tiny_model.modules()) == 0


def test_bad_arguments(tiny_model, batches):
    stats = collect_quant_stats(tiny_model, _test_fn(batches[:1]))
    with pytest.raises(ArgumentError, match="nbins"):
        ActivationHistogramsCollector(tiny_model, stats, nbins=0)
    with pytest.raises(ArgumentError, match="'.nope' is not an image format"):
        ActivationHistogramsCollector(tiny_model, stats, save_hist_imgs=True, hist_imgs_ext=".nope")
    with pytest.raises(ArgumentError, match="Embedding"):
        collect_histograms(tiny_model, _test_fn(batches), classes=[nn.Embedding])
    with pytest.raises(ArgumentError, match="mapping"):
        ActivationHistogramsCollector(tiny_model, [1, 2])
