"""The Quantizer framework: per-layer settings, validation, module replacement, float copies, state."""
import copy
import io

import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError, UnmatchedNameError
from distiller.quantization import OverrideError, Quantizer
from distiller.quantization.q_utils import LinearQuantizeSTE, linear_quant_params_from_tensor
from distiller.quantization.replay import replay_quantization
from distiller.registry import QUANTIZERS


class Marker(nn.Module):
    """Replacement for ReLU that remembers its settings."""

    def __init__(self, bits, scale=1.0):
        super().__init__()
        self.bits, self.scale = bits, scale

    def forward(self, x):
        return torch.relu(x) * self.scale


def _symmetric_fake_quant(tensor, meta):
    scale, zero_point = linear_quant_params_from_tensor(tensor.detach(), meta.num_bits, "sym")
    return LinearQuantizeSTE.apply(tensor, scale, zero_point, True, False)


class ToyQuantizer(Quantizer):
    def __init__(self, model, optimizer=None, bits_activations=8, bits_weights=4, bits_bias=None, overrides=None,
                 train_with_fp_copy=True):
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides, train_with_fp_copy)
        self.param_quantization_fn = _symmetric_fake_quant
        self.replacement_factory[nn.ReLU] = self._replace_relu

    @staticmethod
    def _replace_relu(module, name, qbits_map, scale=1.0):
        bits = qbits_map[name].acts
        return None if bits is None else Marker(bits, scale)


@pytest.fixture(autouse=True, scope="module")
def registered_toy():
    QUANTIZERS.register(ToyQuantizer)
    yield
    QUANTIZERS.unregister("ToyQuantizer")


def test_first_matching_override_wins(relu_cnn):
    quantizer = ToyQuantizer(relu_cnn, overrides={"conv.*": {"bits_weights": 2}, "conv1": {"bits_weights": 8}})
    assert quantizer.module_qbits_map["conv1"].wts == 2 and quantizer.module_qbits_map["conv2"].wts == 2
    quantizer = ToyQuantizer(relu_cnn, overrides=[["conv1", {"bits_weights": 8}], ["conv.*", {"bits_weights": 2}]])
    assert quantizer.module_qbits_map["conv1"].wts == 8 and quantizer.module_qbits_map["conv2"].wts == 2
    assert quantizer.module_qbits_map["fc"].wts == 4  # default
    assert quantizer.module_qbits_map["bn1"].wts is None  # only conv/linear/embedding weights are quantized


def test_override_of_a_container_covers_its_children_and_module_prefix_is_ignored():
    model = nn.Sequential()
    model.add_module("block", nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU()))
    model.add_module("head", nn.Linear(2, 2))
    quantizer = ToyQuantizer(model, overrides={"module.block": {"bits_activations": None, "bits_weights": 3}})
    assert quantizer.module_qbits_map["block.0"] == (None, 3, None)
    assert quantizer.module_qbits_map["block.1"].acts is None and quantizer.module_qbits_map["head"].wts == 4
    parallel = nn.DataParallel(copy.deepcopy(model))
    quantizer = ToyQuantizer(parallel, overrides={"block.0": {"bits_weights": 3}})
    assert quantizer.module_qbits_map["module.block.0"].wts == 3


def test_unmatched_override_names_the_pattern(relu_cnn):
    with pytest.raises(UnmatchedNameError, match="'conv3' matches no module.*did you mean 'conv2'"):
        ToyQuantizer(relu_cnn, overrides={"conv1": {"bits_weights": 8}, "conv3": {"bits_weights": 8}})


@pytest.mark.parametrize("bits", [33, -1, 2.5, 0, "4", True])
def test_invalid_bit_widths_name_argument_expected_type_and_value(relu_cnn, bits):
    with pytest.raises(ArgumentError) as caught:
        ToyQuantizer(relu_cnn, bits_weights=bits)
    assert (caught.value.argument, caught.value.location) == ("bits_weights", ())
    assert f"argument 'bits_weights' expects an integer in [1, 32] or None, got {bits!r}" in str(caught.value)
    with pytest.raises(OverrideError) as caught:
        ToyQuantizer(relu_cnn, overrides={"fc": {"bits_activations": bits}})
    err = caught.value
    assert (err.pattern, err.argument, err.location) == ("fc", "overrides", ("fc", "bits_activations"))
    assert str(err).startswith(f"ToyQuantizer: argument 'overrides['fc']['bits_activations']' expects an integer in "
                               f"[1, 32] or None, got {bits!r}")


@pytest.mark.parametrize("overrides, location, expected", [
    ({"fc": 8}, ("fc",), "expects a mapping of string to mapping of string to object"),
    ("fc", (), "expects a mapping of string to mapping of string to object"),
    ([["fc", {}], ["fc", {"bits_weights": 2}]], (), "pattern(s) 'fc' given more than once"),
])
def test_malformed_overrides(relu_cnn, overrides, location, expected):
    with pytest.raises(ArgumentError) as caught:
        ToyQuantizer(relu_cnn, overrides=overrides)
    assert (caught.value.argument, caught.value.location) == ("overrides", location)
    assert expected in str(caught.value)


def test_unknown_override_setting_fails_before_anything_changes(relu_cnn):
    before = {name: type(m) for name, m in relu_cnn.named_modules()}
    keys = list(relu_cnn.state_dict())
    quantizer = ToyQuantizer(relu_cnn, overrides={"relu1": {"scale": 2.0}, "relu2": {"scael": 2.0}})
    with pytest.raises(ValueError, match=r"\['scael'\] for module 'relu2' \(ReLU\).*valid settings: \['scale'"):
        quantizer.prepare_model()
    assert {name: type(m) for name, m in relu_cnn.named_modules()} == before
    assert list(relu_cnn.state_dict()) == keys


def test_setting_for_modules_the_quantizer_does_not_replace_is_an_error(relu_cnn):
    with pytest.raises(ValueError, match=r"overrides\['conv1'\] sets \['scale'\].*replaces none"):
        ToyQuantizer(relu_cnn, overrides={"conv1": {"scale": 2.0}}).prepare_model()


def test_prepare_replaces_in_place_keeping_names_and_passes_settings(relu_cnn):
    names = [name for name, _ in relu_cnn.named_modules()]
    quantizer = ToyQuantizer(relu_cnn, overrides={"relu2": {"bits_activations": 3, "scale": 0.5},
                                                  "relu1": {"bits_activations": None}})
    quantizer.prepare_model()
    assert [name for name, _ in relu_cnn.named_modules()] == names
    assert isinstance(relu_cnn.relu1, nn.ReLU)  # not quantized: kept
    assert isinstance(relu_cnn.relu2, Marker) and (relu_cnn.relu2.bits, relu_cnn.relu2.scale) == (3, 0.5)


def test_shared_module_is_replaced_once():
    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
    ToyQuantizer(model).prepare_model()
    assert isinstance(model[1], Marker) and model[1] is model[3]


def test_fp_copy_parameter_buffer_and_optimizer(relu_cnn, learnable_batches):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1, momentum=0.9)
    x, y = learnable_batches[0]
    nn.functional.cross_entropy(relu_cnn(x), y).backward()
    optimizer.step()
    momentum = optimizer.state[relu_cnn.conv1.weight]["momentum_buffer"].clone()
    original = relu_cnn.conv1.weight
    quantizer = ToyQuantizer(relu_cnn, optimizer, overrides={"fc": {"bits_weights": None}})
    quantizer.prepare_model()
    conv1 = relu_cnn.conv1
    assert conv1.float_weight is original and "weight" in conv1._buffers and "weight" not in conv1._parameters
    assert isinstance(relu_cnn.fc.weight, nn.Parameter)  # not quantized: untouched
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert any(p is conv1.float_weight for p in params) and not any(p is conv1.weight for p in params)
    assert len(params) == len(list(relu_cnn.parameters()))
    assert torch.equal(optimizer.state[conv1.float_weight]["momentum_buffer"], momentum)  # state kept
    quantizer.quantize_params()
    assert conv1.weight.unique().numel() <= 16 and not torch.equal(conv1.weight, conv1.float_weight)


def test_gradients_reach_float_copy_and_accumulate(relu_cnn, learnable_batches):
    quantizer = ToyQuantizer(relu_cnn)
    quantizer.prepare_model()
    x, y = learnable_batches[0]
    for _ in range(2):  # two backward passes without re-quantizing in between (gradient accumulation)
        nn.functional.cross_entropy(relu_cnn(x), y).backward()
    grad = relu_cnn.conv1.float_weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert relu_cnn.conv1.weight.grad_fn is None  # the buffer holds a plain tensor between passes
    copy.deepcopy(relu_cnn)


def test_without_fp_copy_weights_are_quantized_in_place(relu_cnn):
    weight = relu_cnn.conv2.weight
    quantizer = ToyQuantizer(relu_cnn, train_with_fp_copy=False)
    quantizer.prepare_model()
    quantizer.quantize_params()
    assert relu_cnn.conv2.weight is weight and weight.unique().numel() <= 16
    assert not any(n.startswith("float_") for n, _ in relu_cnn.named_parameters())


def test_prepare_is_idempotent_for_identical_configuration(relu_cnn):
    overrides = {"fc": {"bits_weights": None}}
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    first = ToyQuantizer(relu_cnn, optimizer, overrides=overrides)
    first.prepare_model()
    with pytest.raises(RuntimeError, match="already called"):
        first.prepare_model()
    structure = [(n, type(m)) for n, m in relu_cnn.named_modules()]
    param_names = [n for n, _ in relu_cnn.named_parameters()]
    second = ToyQuantizer(relu_cnn, optimizer, overrides=overrides)
    second.prepare_model()  # adopts: nothing wrapped or copied twice
    assert [(n, type(m)) for n, m in relu_cnn.named_modules()] == structure
    assert [n for n, _ in relu_cnn.named_parameters()] == param_names
    assert [p.module_name for p in second.params_to_quantize] == ["conv1", "conv2"]
    assert len(relu_cnn.conv1._forward_pre_hooks) == 1  # the first quantizer's hooks were replaced
    with pytest.raises(RuntimeError, match="already prepared by ToyQuantizer with other settings"):
        ToyQuantizer(relu_cnn, bits_weights=3).prepare_model()


def test_state_dict_is_plain_data_and_replays(relu_cnn):
    quantizer = ToyQuantizer(relu_cnn, overrides={"relu2": {"scale": 0.5}, "fc": {"bits_weights": None}})
    quantizer.prepare_model(torch.zeros(1, 3, 8, 8))
    state = quantizer.state_dict()
    assert state == {"class": "ToyQuantizer",
                     "args": {"bits_activations": 8, "bits_weights": 4, "bits_bias": None,
                              "overrides": [["relu2", {"scale": 0.5}], ["fc", {"bits_weights": None}]],
                              "train_with_fp_copy": True},
                     "dummy_input": {"shape": [1, 3, 8, 8], "dtype": "float32"}}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == state

    torch.manual_seed(1)
    fresh = type(relu_cnn)()
    replay_quantization(fresh, {"kind": "quantization", "quantizer": state})
    assert [(n, type(m)) for n, m in fresh.named_modules()] == [(n, type(m)) for n, m in relu_cnn.named_modules()]
    assert list(fresh.state_dict()) == list(relu_cnn.state_dict())
    assert fresh.relu2.scale == 0.5


class FunctionalReluNet(nn.Module):
    """Calls torch.relu: no activation module for a quantizer to replace."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv1(x)).mean((2, 3)))


def test_activation_bits_on_a_model_without_activation_modules_is_an_error():
    model = FunctionalReluNet()
    message = "no module whose activations it quantizes.*replaces: ReLU.*bits_activations: null"
    with pytest.raises(ValueError, match=message):
        ToyQuantizer(model).prepare_model()
    assert not any(name.endswith("float_weight") for name, _ in model.named_parameters())  # nothing applied
    ToyQuantizer(model, bits_activations=None).prepare_model()  # weights only: fine
    assert isinstance(model.conv1.float_weight, nn.Parameter)


def test_the_preparation_record_travels_with_the_model_not_a_module_level_registry():
    """A deep copy of a prepared model can be adopted by an identical quantizer on its own, and doing so
    leaves the original's float-copy hooks in place; nothing is kept in module-level state."""
    import distiller.quantization.base as base
    from distiller.quantization import DorefaQuantizer
    from distiller.testing import TinyCNN

    def refresh_hooks(model):
        return sum(getattr(hook, "_distiller_refresh_hook", False) for module in model.modules()
                   for hook in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()])

    model = TinyCNN()
    DorefaQuantizer(model, torch.optim.SGD(model.parameters(), lr=0.1), bits_activations=8,
                    bits_weights=4).prepare_model()
    before = refresh_hooks(model)
    assert before > 0
    twin = copy.deepcopy(model)
    DorefaQuantizer(twin, torch.optim.SGD(twin.parameters(), lr=0.1), bits_activations=8,
                    bits_weights=4).prepare_model()
    assert refresh_hooks(model) == before and refresh_hooks(twin) == before
    with pytest.raises(RuntimeError, match="already prepared by DorefaQuantizer with other settings"):
        DorefaQuantizer(twin, torch.optim.SGD(twin.parameters(), lr=0.1), bits_activations=8,
                        bits_weights=2).prepare_model()
    assert not hasattr(base, "_PREPARED_MODELS")
