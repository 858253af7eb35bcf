"""Element-wise pruners built through the registry: masks, argument validation, state."""
import pytest
import torch

from distiller.errors import ArgumentError
from distiller.pruning import baidu_rnn_threshold
from distiller.registry import PRUNERS
from distiller.scheduler import ParameterMasker


def build(class_name, **kwargs):
    return PRUNERS.get(class_name)(**kwargs)


def prune(pruner, param, name="w", masks=None, **meta):
    masks = masks if masks is not None else {name: ParameterMasker(name)}
    meta = {"starting_epoch": 0, "ending_epoch": 10, "frequency": 1, "current_epoch": 0, "model": None,
            "optimizer": None, **meta}
    pruner.set_param_mask(param, name, masks, meta)
    return masks[name].mask


def test_magnitude_pruner_per_name_regex_and_default():
    pruner = build("MagnitudeParameterPruner", name="mag",
                   thresholds={"conv1.weight": 0.5, r"fc\..*": 0.05, "*": 0.2})
    w = torch.tensor([0.1, 0.3, 0.6])
    assert prune(pruner, w, "conv1.weight").tolist() == [0, 0, 1]
    assert prune(pruner, w, "fc.weight").tolist() == [1, 1, 1]
    assert prune(pruner, w, "conv2.weight").tolist() == [0, 1, 1]
    assert pruner.targets() == ["conv1.weight", r"fc\..*", "*"]


def test_magnitude_pruner_accepts_yaml_exponent_strings():
    # PyYAML reads 1e-1 (no dot) as the string '1e-1'
    pruner = build("MagnitudeParameterPruner", name="mag", thresholds={"*": "1e-1"})
    assert prune(pruner, torch.tensor([0.05, 0.2])).tolist() == [0, 1]


def test_level_pruner_reaches_exact_levels():
    pruner = build("SparsityLevelParameterPruner", name="lvl", levels={"a": 0.5, "*": 0.25})
    w = torch.randn(10, 10)
    assert int((prune(pruner, w, "a") == 0).sum()) == 50
    assert int((prune(pruner, w, "b") == 0).sum()) == 25


def test_level_pruner_levels_override_is_validated():
    pruner = build("SparsityLevelParameterPruner", name="lvl", levels={"*": 0.5})
    pruner.levels = {"*": 0.75}
    assert int((prune(pruner, torch.randn(8)) == 0).sum()) == 6
    with pytest.raises(ArgumentError, match=r"levels\['\*'\]' expects a number in \[0, 1\), got 1.0"):
        pruner.levels = {"*": 1.0}


def test_sensitivity_pruner_threshold_is_std_times_sensitivity():
    pruner = build("SensitivityPruner", name="sens", sensitivities={"*": 1.0})
    w = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert prune(pruner, w).tolist() == [1, 0, 0, 0, 1]


def splicing(**overrides):
    args = dict(name="splice", sensitivities={"*": 0.0}, low_thresh_mult=0.5, hi_thresh_mult=1.5)
    return build("SplicingPruner", **{**args, **overrides})


def test_splicing_hysteresis_prunes_splices_and_keeps():
    pruner = splicing()
    masks = {"w": ParameterMasker("w")}
    # mean|w| = 1.2 -> low = 0.6, high = 1.8 (statistics from this first call are kept)
    w = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.9])
    assert prune(pruner, w, masks=masks).tolist() == [0, 0, 1, 1, 1]
    w2 = torch.tensor([1.0, 2.0, 0.3, 1.5, 1.0])
    # pruned & in band -> stays pruned; pruned & above high -> spliced; kept & below low -> pruned
    assert prune(pruner, w2, masks=masks).tolist() == [0, 1, 0, 1, 1]


def test_splicing_sensitivity_grows_per_epoch():
    pruner = splicing(sensitivities={"*": 0.5}, sensitivity_multiplier=0.1)
    meta = {"starting_epoch": 2, "current_epoch": 12}
    assert pruner.current_sensitivity("w", meta) == pytest.approx(0.5 * (1 + 0.1 * 10))
    assert splicing(sensitivities={"*": 0.5}).current_sensitivity("w", meta) == 0.5


def test_splicing_state_dict_restores_thresholds():
    pruner = splicing(sensitivities={"*": 1.0})
    w = torch.randn(50)
    prune(pruner, w)
    resumed = splicing(sensitivities={"*": 1.0})
    resumed.load_state_dict(pruner.state_dict())
    meta = {"starting_epoch": 0, "current_epoch": 3}
    shrunk = w * 0.1  # resumed weights differ: thresholds must still come from the first statistics
    assert resumed.splice_thresholds(shrunk, "w", meta) == pruner.splice_thresholds(w, "w", meta)
    assert all(isinstance(v, float) for v in resumed.state_dict()["weight_stats"]["w"])


def test_baidu_threshold_follows_both_slopes():
    q, offset, mult, start, end, freq = 0.2, 3, 1.5, 0, 10, 1
    theta = 2 * q * freq / (2 * 3 + 3 * 7)
    assert baidu_rnn_threshold(q, offset, mult, start, end, freq, 1) == pytest.approx(2 * theta)
    assert baidu_rnn_threshold(q, offset, mult, start, end, freq, 5) == pytest.approx(4 * theta + 1.5 * theta * 3)
    values = [baidu_rnn_threshold(q, offset, mult, start, end, freq, e) for e in range(start, end)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert steps[:2] == pytest.approx([theta] * 2) and steps[3:] == pytest.approx([1.5 * theta] * 6)


def test_baidu_pruner_masks_below_scheduled_threshold():
    pruner = build("BaiduRNNPruner", name="rnn", q=0.2, ramp_epoch_offset=3, ramp_slope_mult=1.5,
                   weights=["rnn.weight_hh_l0"])
    w = torch.linspace(-0.3, 0.3, 61)
    meta = dict(starting_epoch=0, ending_epoch=10, frequency=1, current_epoch=5)
    threshold = baidu_rnn_threshold(0.2, 3, 1.5, 0, 10, 1, 5)
    assert torch.equal(prune(pruner, w, "rnn.weight_hh_l0", **meta), (w.abs() > threshold).float())
    assert pruner.targets() == ["rnn.weight_hh_l0"]


def test_baidu_pruner_ramp_after_end_names_instance():
    pruner = build("BaiduRNNPruner", name="rnn", q=0.2, ramp_epoch_offset=12, ramp_slope_mult=1.5,
                   weights="w")
    with pytest.raises(ValueError, match="rnn: the ramp epoch"):
        prune(pruner, torch.ones(3), ending_epoch=10)


@pytest.mark.parametrize("class_name, kwargs, argument, message", [
    ("MagnitudeParameterPruner", {"thresholds": {}}, "thresholds",
     r"argument 'thresholds' expects a mapping of string to number >= 0, got \{\}"),
    ("MagnitudeParameterPruner", {"thresholds": 0.1}, "thresholds",
     r"argument 'thresholds' expects a mapping of string to number >= 0, got 0.1"),
    ("MagnitudeParameterPruner", {"thresholds": {"*": "high"}}, "thresholds",
     r"argument 'thresholds\['\*'\]' expects a number >= 0, got 'high'"),
    ("MagnitudeParameterPruner", {"thresholds": {"*": -0.1}}, "thresholds",
     r"argument 'thresholds\['\*'\]' expects a number >= 0, got -0.1"),
    ("MagnitudeParameterPruner", {"thresholds": {"*": True}}, "thresholds",
     r"argument 'thresholds\['\*'\]' expects a number >= 0, got True"),
    ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 1.0}}, "levels",
     r"argument 'levels\['fc.weight'\]' expects a number in \[0, 1\), got 1.0"),
    ("SparsityLevelParameterPruner", {"levels": {"*": -0.1}}, "levels",
     r"argument 'levels\['\*'\]' expects a number in \[0, 1\), got -0.1"),
    ("SensitivityPruner", {"sensitivities": {"*": None}}, "sensitivities",
     r"argument 'sensitivities\['\*'\]' expects a number >= 0, got None"),
    ("SplicingPruner", {"sensitivities": {"*": 1}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1,
                        "sensitivity_multiplier": -1}, "sensitivity_multiplier",
     "argument 'sensitivity_multiplier' expects a number >= 0, got -1"),
    ("BaiduRNNPruner", {"q": 0, "ramp_epoch_offset": 1, "ramp_slope_mult": 1.5, "weights": ["w"]}, "q",
     "argument 'q' expects a number > 0, got 0"),
    ("BaiduRNNPruner", {"q": 0.1, "ramp_epoch_offset": -1, "ramp_slope_mult": 1.5, "weights": ["w"]},
     "ramp_epoch_offset", "argument 'ramp_epoch_offset' expects a number >= 0, got -1"),
    ("BaiduRNNPruner", {"q": 0.1, "ramp_epoch_offset": 1, "ramp_slope_mult": 1.5, "weights": []}, "weights",
     r"argument 'weights' expects a list of string, got \[\]"),
    ("BaiduRNNPruner", {"q": 0.1, "ramp_epoch_offset": 1, "ramp_slope_mult": 1.5, "weights": [3]}, "weights",
     r"argument 'weights\[0\]' expects a string, got 3"),
])
def test_bad_argument_values_name_the_class_argument_expected_type_and_value(class_name, kwargs, argument, message):
    with pytest.raises(ArgumentError, match=f"^{class_name}: {message}") as info:
        build(class_name, name="my_pruner", **kwargs)
    assert info.value.argument == argument


def test_splicing_thresholds_in_the_wrong_order_name_the_instance_and_argument():
    with pytest.raises(ArgumentError, match="^my_pruner: hi_thresh_mult=0.8 is below low_thresh_mult") as info:
        build("SplicingPruner", name="my_pruner", sensitivities={"*": 1}, low_thresh_mult=1.2, hi_thresh_mult=0.8)
    assert info.value.argument == "hi_thresh_mult"


def test_value_lookup_without_match_names_the_parameter():
    pruner = build("SparsityLevelParameterPruner", name="lvl", levels={"conv1.weight": 0.5})
    with pytest.raises(KeyError, match="fc.weight"):
        prune(pruner, torch.ones(4), "fc.weight")
