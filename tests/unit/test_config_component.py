"""config_component_from_file_by_class: one instance built from a YAML file by its class."""
import textwrap

import pytest

from distiller.config import config_component_from_file_by_class
from distiller.errors import ScheduleError
from distiller.quantization import PostTrainLinearQuantizer
from distiller.testing import TinyCNN

FILE = """
quantizers:
  linear_quantizer:
    class: PostTrainLinearQuantizer
    bits_activations: 8
    bits_parameters: 4
    mode: ASYMMETRIC_UNSIGNED
pruners:
  conv_pruner:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.5
    weights: [conv1.weight]
policies:
  - pruner: {instance_name: conv_pruner}
    epochs: [0]
"""


def write(tmp_path, text):
    path = tmp_path / "components.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_builds_the_instance_of_the_class_with_overrides(tmp_path):
    model = TinyCNN()
    quantizer = config_component_from_file_by_class(model, write(tmp_path, FILE), "PostTrainLinearQuantizer",
                                                    bits_accum=16)
    assert isinstance(quantizer, PostTrainLinearQuantizer) and quantizer.model is model
    assert quantizer.default_qbits.wts == 4 and quantizer.bits_accum == 16
    pruner = config_component_from_file_by_class(model, write(tmp_path, FILE), "AutomatedGradualPruner")
    assert pruner.name == "conv_pruner" and pruner.final_sparsity == 0.5


def test_errors_name_the_file_and_what_is_there(tmp_path):
    path = write(tmp_path, FILE)
    with pytest.raises(ScheduleError, match=r"components.yaml, line 2: expected exactly one instance of class "
                                            r"DorefaQuantizer, found 0 \(classes defined: AutomatedGradualPruner, "
                                            r"PostTrainLinearQuantizer\)"):
        config_component_from_file_by_class(TinyCNN(), path, "DorefaQuantizer")
    with pytest.raises(ScheduleError, match=r"quantizers.linear_quantizer.*no argument 'bits_acts'"):
        config_component_from_file_by_class(TinyCNN(), path, "PostTrainLinearQuantizer", bits_acts=4)
    with pytest.raises(ScheduleError, match="missing.yaml: schedule file not found"):
        config_component_from_file_by_class(TinyCNN(), str(tmp_path / "missing.yaml"), "PostTrainLinearQuantizer")
