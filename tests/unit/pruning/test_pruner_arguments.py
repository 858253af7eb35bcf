"""Pruner arguments go through one check (distiller.spec): a schedule and a Python call get the same error,
and the schedule's error points at the argument's YAML path and line."""
import pytest
import yaml

from distiller.config import file_config
from distiller.errors import ArgumentError, ScheduleError
from distiller.registry import PRUNERS
from distiller.testing import TinyCNN

AGP = {"initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": ["conv1.weight"]}
SPLICING = {"sensitivities": {"conv1.weight": 0.5}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1}
RNN = {"q": 0.2, "ramp_epoch_offset": 1, "ramp_slope_mult": 1.5, "weights": ["fc.weight"]}
RANKED = {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv1.weight"]}

# (class, arguments, argument named by the error, place inside its value)
BAD_ARGUMENTS = [
    ("MagnitudeParameterPruner", {"thresholds": {"conv1.weight": -0.1}}, "thresholds", ("conv1.weight",)),
    ("SparsityLevelParameterPruner", {"levels": {"conv1.weight": 1.5}}, "levels", ("conv1.weight",)),
    ("SensitivityPruner", {"sensitivities": {}}, "sensitivities", ()),
    ("SplicingPruner", {**SPLICING, "low_thresh_mult": "low"}, "low_thresh_mult", ()),
    ("SplicingPruner", {**SPLICING, "hi_thresh_mult": 0.5}, "hi_thresh_mult", ()),          # below low_thresh_mult
    ("BaiduRNNPruner", {**RNN, "weights": ["fc.weight", 7]}, "weights", (1,)),
    ("AutomatedGradualPruner", {**AGP, "final_sparsity": 1.0}, "final_sparsity", ()),
    ("AutomatedGradualPruner", {**AGP, "final_sparsity": 0.05}, "final_sparsity", ()),        # below initial
    ("StructureParameterPruner", {"reg_regims": {"conv1.weight": [0.01, "Kernelz"]}, "threshold_criteria": "Max"},
     "reg_regims", ("conv1.weight", 1)),
    ("StructureParameterPruner", {"reg_regims": {"conv1.weight": [0.01, "Filters"]}, "threshold_criteria": "max"},
     "threshold_criteria", ()),
    ("FMReconstructionChannelPruner", {**RANKED, "group_type": "Channels", "max_samples": 0}, "max_samples", ()),
    ("FMReconstructionChannelPruner", {**RANKED}, "group_type", ()),                             # not 'Channels'
    ("RandomLevelStructureParameterPruner", {**RANKED, "desired_sparsity": None, "sparsity_range": [0.5, 0.2]},
     "sparsity_range", ()),                                                                      # low > high
    ("RandomLevelStructureParameterPruner", {**RANKED, "desired_sparsity": None, "sparsity_range": [0.1, 1.0]},
     "sparsity_range", (1,)),
]


def _python_call(class_name, args, model):
    args = {k: v for k, v in args.items() if v is not None}
    cls = PRUNERS.get(class_name)
    needs_model = class_name == "StructureParameterPruner"
    return cls(name="bad", model=model, **args) if needs_model else cls(name="bad", **args)


@pytest.mark.parametrize("class_name, args, argument, location", BAD_ARGUMENTS)
def test_python_and_yaml_callers_get_the_same_error_at_the_argument(tmp_path, class_name, args, argument, location):
    model = TinyCNN()
    with pytest.raises(ArgumentError) as python:
        _python_call(class_name, args, model)
    assert (python.value.argument, python.value.location) == (argument, location)

    args = {k: v for k, v in args.items() if v is not None}
    text = yaml.safe_dump({"pruners": {"bad": {"class": class_name, **args}},
                           "policies": [{"pruner": {"instance_name": "bad"}, "epochs": [0]}]}, sort_keys=False)
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as schedule:
        file_config(model, None, str(path))
    assert str(python.value) in str(schedule.value)
    inside = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)
    assert schedule.value.path == f"pruners.bad.{argument}{inside}"
    argument_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(f"{argument}:"))
    assert schedule.value.line is not None and schedule.value.line >= argument_line
    if not location:
        assert schedule.value.line == argument_line
