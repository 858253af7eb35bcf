"""convert_checkpoint: checkpoints written in IntelLabs Distiller's format (pickled classes under Distiller's
module paths, DataParallel prefixes, thinning recipes, quantizer metadata, masks, optimizer) become weights-only
checkpoints that load_checkpoint rebuilds with the same outputs; bad input is a one-line user error."""
import argparse
import collections
import importlib
import os

import numpy as np
import pytest
import torch

from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.apputils.convert_checkpoint import convert_checkpoint, main
from distiller.errors import CheckpointError, InputFileError
from distiller.models import create_model, register_model, registry
from distiller.quantization import LinearQuantMode, PostTrainLinearQuantizer, QuantAwareTrainRangeLinearQuantizer

# Stand-ins that pickle under the paths Distiller's own classes have (patched into those modules while saving).
Recipe = collections.namedtuple("ThinningRecipe", ["modules", "parameters"], module="distiller.thinning")
PTQ = type("PostTrainLinearQuantizer", (), {"__module__": "distiller.quantization.range_linear"})
QAT = type("QuantAwareTrainRangeLinearQuantizer", (), {"__module__": "distiller.quantization.range_linear"})


class PostTrainLinearQuantiser:
    """A quantizer class this library does not have (pickles under this test module's path)."""


def save_distiller(path, checkpoint, legacy=False):
    """torch.save as Distiller did: its classes pickled by their Distiller paths (legacy: torch < 1.6's format)."""
    with pytest.MonkeyPatch.context() as patch:
        for cls in (Recipe, PTQ, QAT):
            patch.setattr(importlib.import_module(cls.__module__), cls.__qualname__, cls, raising=False)
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return path


def build(arch, seed=0):
    torch.manual_seed(seed)
    return create_model(False, "cifar10", arch, parallel=False, device_ids=-1).eval()


def parallel_state(model):
    """The state dict as a DataParallel model saved it."""
    return {f"module.{name}": tensor.clone() for name, tensor in model.state_dict().items()}


def thin_state(state, recipe):
    """Applies a Distiller recipe to a state dict the way Distiller's execute_thinning_recipe shrank tensors."""
    state = dict(state)
    for name, directives in recipe.parameters.items():
        for dim, keep, *views in (directives if isinstance(directives, list) else [directives]):
            if views:  # (dim, indices, view before, view after)
                state[name] = state[name].view(*views[0]).index_select(dim, keep).reshape(views[1])
            else:
                state[name] = state[name].index_select(dim, keep)
    for module, settings in recipe.modules.items():
        for attr in ("running_mean", "running_var"):
            if attr in settings:
                state[f"{module}.{attr}"] = state[f"{module}.{attr}"].index_select(*settings[attr])
    return state


def reload(path, arch):
    model, scheduler, optimizer, start_epoch = load_checkpoint(build(arch, seed=1), path, expected_arch=arch)
    return model.eval(), scheduler, optimizer, start_epoch


def kept(size, removed):
    return torch.tensor([i for i in range(size) if i not in removed])


def x_input(seed=3):
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_plain_checkpoint_with_optimizer_and_extras(tmp_path, legacy):
    model = build("simplenet_cifar")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x_input()).sum().backward()
    optimizer.step()
    old = save_distiller(tmp_path / "old.pth.tar", {
        "epoch": 7, "arch": "simplenet_cifar", "state_dict": parallel_state(model),
        "optimizer_state_dict": optimizer.state_dict(), "optimizer_type": torch.optim.SGD,
        "compression_sched": {"masks_dict": {"module.conv1.weight": None}, "best_top1": np.float64(91.25)},
        "extras": {"current_top1": torch.tensor(90.5), "best_epoch": np.int64(7), "top1": np.array([88.0, 90.5]),
                   "args": argparse.Namespace(lr=0.1)}},
        legacy=legacy)

    summary = convert_checkpoint(old, tmp_path / "new.pth.tar")

    saved = torch.load(tmp_path / "new.pth.tar", weights_only=True)
    top1 = saved["extras"].pop("top1")
    assert saved["extras"] == {"current_top1": 90.5, "best_epoch": 7, "best_top1": 91.25}
    assert torch.equal(top1, torch.tensor([88.0, 90.5], dtype=torch.float64))
    assert [type(saved["extras"][k]) for k in ("current_top1", "best_epoch", "best_top1")] == [float, int, float]
    assert summary["dropped"] == ["extras['args'] (holds argparse.Namespace)"]
    assert (summary["epoch"], summary["optimizer"], summary["max_abs_difference"]) == (7, "SGD", 0.0)
    loaded, _, loaded_optimizer, start_epoch = reload(tmp_path / "new.pth.tar", "simplenet_cifar")
    assert start_epoch == 8
    assert torch.equal(loaded(x_input()), model(x_input()))
    momentum = [loaded_optimizer.state[p]["momentum_buffer"] for p in loaded.parameters()]
    assert all(torch.equal(a, optimizer.state[p]["momentum_buffer"]) for a, p in zip(momentum, model.parameters()))
    assert loaded_optimizer.param_groups[0]["momentum"] == 0.9


def test_thinned_resnet20_with_masks(tmp_path):
    """Filters removed from layer1.0.conv1 (zero, with a zero BatchNorm shift: removing them is exact)."""
    dense = build("resnet20_cifar")
    removed = [1, 4, 6]
    keep = kept(16, removed)
    with torch.no_grad():
        dense.layer1[0].conv1.weight[removed] = 0
        dense.layer1[0].bn1.bias[removed] = 0
        dense.layer1[0].bn1.running_mean[removed] = 0
    block = "module.layer1.0"
    recipe = Recipe(modules={f"{block}.conv1": {"out_channels": 13}, f"{block}.conv2": {"in_channels": 13},
                             f"{block}.bn1": {"num_features": 13, "running_mean": (0, keep), "running_var": (0, keep)}},
                    parameters={f"{block}.conv1.weight": [(0, keep)], f"{block}.conv2.weight": [(1, keep)],
                                f"{block}.bn1.weight": [(0, keep)], f"{block}.bn1.bias": [(0, keep)]})
    mask = (torch.rand(13, 16, 3, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    old = save_distiller(tmp_path / "old.pth.tar", {
        "epoch": 2, "arch": "resnet20_cifar", "state_dict": thin_state(parallel_state(dense), recipe),
        "thinning_recipes": [recipe], "compression_sched": {"masks_dict": {f"{block}.conv1.weight": mask}}})

    summary = convert_checkpoint(old, tmp_path / "new.pth.tar")

    assert (summary["thinning_recipes"], summary["masks"]) == (1, 1)
    loaded, scheduler, _, _ = reload(tmp_path / "new.pth.tar", "resnet20_cifar")
    assert (loaded.layer1[0].conv1.out_channels, loaded.layer1[0].conv2.in_channels) == (13, 13)
    assert torch.equal(scheduler.zeros_mask_dict["layer1.0.conv1.weight"].mask, mask)
    torch.testing.assert_close(loaded(x_input()), dense(x_input()), rtol=1e-5, atol=1e-5)


def simplenet_recipes():
    """Two recipes in sequence: conv1 filters (in Distiller's first format: one directive tuple per parameter),
    then conv2 filters, which fc1 reads flattened (a directive with the [out, channels, h, w] view)."""
    keep1, keep2 = kept(6, [2]), kept(16, [0, 5, 9, 10])
    first = Recipe(modules={"module.conv1": {"out_channels": 5}, "module.conv2": {"in_channels": 5}},
                   parameters={"module.conv1.weight": (0, keep1), "module.conv1.bias": (0, keep1),
                               "module.conv2.weight": (1, keep1)})
    second = Recipe(modules={"module.conv2": {"out_channels": 12}, "module.fc1": {"in_features": 300}},
                    parameters={"module.conv2.weight": [(0, keep2)], "module.conv2.bias": [(0, keep2)],
                                "module.fc1.weight": [(1, keep2, (120, 16, 5, 5), (120, 300))]})
    return first, second


def test_thinned_simplenet_two_recipes_and_flattened_linear(tmp_path):
    dense = build("simplenet_cifar")
    with torch.no_grad():  # the removed filters are zero: removing them changes nothing
        for layer, removed in ((dense.conv1, [2]), (dense.conv2, [0, 5, 9, 10])):
            layer.weight[removed] = 0
            layer.bias[removed] = 0
    first, second = simplenet_recipes()
    old = save_distiller(tmp_path / "old.pth.tar", {
        "arch": "simplenet_cifar", "thinning_recipes": [first, second],
        "state_dict": thin_state(thin_state(parallel_state(dense), first), second)})

    convert_checkpoint(old, tmp_path / "new.pth.tar")

    loaded, _, _, start_epoch = reload(tmp_path / "new.pth.tar", "simplenet_cifar")
    assert (loaded.conv1.out_channels, loaded.conv2.out_channels, loaded.fc1.in_features) == (5, 12, 300)
    assert start_epoch == 0  # no epoch recorded
    torch.testing.assert_close(loaded(x_input()), dense(x_input()), rtol=1e-5, atol=1e-5)


class DepthwiseNet(torch.nn.Module):
    """conv -> BatchNorm -> depthwise conv -> BatchNorm -> global pooling -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
        self.dw, self.bn2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn2(self.dw(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def test_thinned_depthwise_convolution(tmp_path, monkeypatch):
    """Distiller's recipe for filters feeding a depthwise convolution sets its in_channels, groups and
    out_channels and selects its weight's first dimension; Linear reads the pooled channels (1x1 view)."""
    monkeypatch.setattr(registry, "MODELS", registry.MODELS.copy())
    register_model("cifar10", name="depthwise_net")(DepthwiseNet)
    dense = build("depthwise_net")
    removed, keep = [0, 3], kept(8, [0, 3])
    with torch.no_grad():
        dense.conv1.weight[removed] = 0
        for bn in (dense.bn1, dense.bn2):
            bn.bias[removed] = 0
            bn.running_mean[removed] = 0
    statistics = {"num_features": 6, "running_mean": (0, keep), "running_var": (0, keep)}
    recipe = Recipe(modules={"conv1": {"out_channels": 6}, "bn1": statistics, "bn2": statistics,
                             "dw": {"in_channels": 6, "groups": 6, "out_channels": 6}, "fc": {"in_features": 6}},
                    parameters={"conv1.weight": [(0, keep)], "dw.weight": [(0, keep)],
                                **{f"{bn}.{p}": [(0, keep)] for bn in ("bn1", "bn2") for p in ("weight", "bias")},
                                "fc.weight": [(1, keep, (10, 8, 1, 1), (10, 6))]})
    old = save_distiller(tmp_path / "old.pth.tar", {"arch": "depthwise_net", "thinning_recipes": [recipe],
                                                    "state_dict": thin_state(dense.state_dict(), recipe)})

    convert_checkpoint(old, tmp_path / "new.pth.tar")

    loaded = reload(tmp_path / "new.pth.tar", "depthwise_net")[0]
    assert (loaded.dw.in_channels, loaded.dw.groups, loaded.dw.out_channels, loaded.fc.in_features) == (6, 6, 6, 6)
    torch.testing.assert_close(loaded(x_input()), dense(x_input()), rtol=1e-5, atol=1e-5)


PTQ_PARAMS = {
    "distiller-ptq": {"bits_activations": 8, "bits_parameters": 6, "bits_accum": 32, "mode": "ASYMMETRIC_UNSIGNED",
                      "clip_acts": "NONE", "clip_n_stds": None, "per_channel_wts": False, "fp16": False,
                      "scale_approx_mult_bits": None, "overrides": collections.OrderedDict()},
    "base-class-names": {"bits_activations": 8, "bits_weights": 6, "bits_bias": 32, "overrides": None,
                         "mode": LinearQuantMode.ASYMMETRIC_UNSIGNED},
}


@pytest.mark.parametrize("params", PTQ_PARAMS.values(), ids=PTQ_PARAMS)
def test_post_training_quantized(tmp_path, params):
    """Its masks are dropped (the weights hold integer codes), whether named before or after quantization."""
    model = build("simplenet_cifar")
    dummy = torch.zeros(1, 3, 32, 32)
    masks = {"module.fc1.weight": torch.ones(120, 400), "module.conv1.wrapped_module.weight": torch.ones(6, 3, 5, 5)}
    PostTrainLinearQuantizer(model, bits_activations=8, bits_parameters=6, mode="ASYMMETRIC_UNSIGNED"
                             ).prepare_model(dummy)
    old = save_distiller(tmp_path / "old.pth.tar", {
        "epoch": 0, "arch": "simplenet_cifar", "state_dict": parallel_state(model),
        "compression_sched": {"masks_dict": masks}, "quantizer_metadata": {"type": PTQ, "params": params,
                                                                             "dummy_input": dummy}})

    summary = convert_checkpoint(old, tmp_path / "new.pth.tar")

    assert (summary["quantizer"], summary["masks"]) == ("PostTrainLinearQuantizer", 0)
    assert summary["dropped"][0].startswith("the 2 mask(s) of compression_sched")
    record = torch.load(tmp_path / "new.pth.tar", weights_only=True)["compression_sched"]["model_transforms"][0]
    assert record["quantizer"]["args"]["bits_parameters"] == 6
    loaded = reload(tmp_path / "new.pth.tar", "simplenet_cifar")[0]
    assert torch.equal(loaded(x_input()), model(x_input()))


def test_quantization_aware_training_masks_follow_their_weights(tmp_path):
    """Distiller named QAT masks as before quantization (conv1.weight); the weight is now conv1.float_weight."""
    model = build("simplenet_cifar")
    mask = (torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    dummy = torch.zeros(1, 3, 32, 32)
    quantizer = QuantAwareTrainRangeLinearQuantizer(model, bits_activations=8, bits_weights=4)
    quantizer.prepare_model(dummy)
    quantizer.quantize_params()
    model.eval()  # the quantizer's new modules start in training mode (they would update their statistics)
    params = {"bits_activations": 8, "bits_weights": 4, "bits_bias": 32, "overrides": collections.OrderedDict(),
              "mode": "SYMMETRIC", "ema_decay": 0.999, "per_channel_wts": False, "quantize_inputs": True,
              "num_bits_inputs": None}
    old = save_distiller(tmp_path / "old.pth.tar", {
        "epoch": 4, "arch": "simplenet_cifar", "state_dict": parallel_state(model),
        "compression_sched": {"masks_dict": {"module.conv1.weight": mask}},
        "quantizer_metadata": {"type": QAT, "params": params, "dummy_input": dummy}})

    summary = convert_checkpoint(old, tmp_path / "new.pth.tar")

    assert (summary["quantizer"], summary["masks"]) == ("QuantAwareTrainRangeLinearQuantizer", 1)
    loaded, scheduler, _, _ = reload(tmp_path / "new.pth.tar", "simplenet_cifar")
    assert torch.equal(scheduler.zeros_mask_dict["conv1.float_weight"].mask, mask)
    assert torch.equal(loaded(x_input()), model(x_input()))


@pytest.fixture
def simplenet_checkpoint(tmp_path):
    """Writes a Distiller checkpoint of simplenet_cifar with the given entries replaced; returns its path."""
    def write(**entries):
        checkpoint = {"epoch": 1, "arch": "simplenet_cifar", "state_dict": parallel_state(build("simplenet_cifar"))}
        return save_distiller(tmp_path / "old.pth.tar", {**checkpoint, **entries})
    return write


def convert_error(old, tmp_path, **kwargs):
    with pytest.raises((CheckpointError, InputFileError)) as error:
        convert_checkpoint(old, tmp_path / "new.pth.tar", **kwargs)
    assert not (tmp_path / "new.pth.tar").exists()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_missing_corrupt_and_foreign_files(tmp_path):
    assert "not found" in convert_error(tmp_path / "nothing.pth.tar", tmp_path)
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint at all")
    assert "not a readable Distiller checkpoint" in convert_error(tmp_path / "junk.pth.tar", tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth.tar")
    assert "no 'state_dict' entry" in convert_error(tmp_path / "other.pth.tar", tmp_path)
    ours = save_checkpoint(0, "simplenet_cifar", build("simplenet_cifar"), dir=tmp_path)
    assert "already in this library's format" in convert_error(ours, tmp_path)


class RunsCommand:
    """Unpickles by calling os.system, as a malicious file would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_functions_a_file_names_are_never_called(simplenet_checkpoint, tmp_path):
    marker = tmp_path / "ran"
    old = simplenet_checkpoint(extras={"payload": RunsCommand(f"touch {marker}")})
    summary = convert_checkpoint(old, tmp_path / "new.pth.tar")
    assert not marker.exists()
    assert summary["dropped"] == [f"extras['payload'] (holds {os.system.__module__}.system)"]


def test_load_checkpoint_points_distiller_checkpoints_to_the_converter(simplenet_checkpoint):
    old = simplenet_checkpoint(optimizer_type=torch.optim.SGD)
    with pytest.raises(CheckpointError, match="python -m distiller.apputils.convert_checkpoint .*old.pth.tar NEW"):
        load_checkpoint(build("simplenet_cifar"), old)


def test_unknown_recorded_architecture_names_close_ones_and_arch_overrides_it(simplenet_checkpoint, tmp_path):
    old = simplenet_checkpoint(arch="simplenet-cifar")
    message = convert_error(old, tmp_path)
    assert "'simplenet-cifar'" in message and "did you mean 'simplenet_cifar'" in message and "--arch" in message
    assert convert_checkpoint(old, tmp_path / "new.pth.tar", arch="simplenet_cifar")["arch"] == "simplenet_cifar"


def misfit_recipes():
    first, second = simplenet_recipes()
    keep = second.parameters["module.conv2.weight"][0][1]
    return {
        "unknown-module": ([first, second._replace(parameters={**second.parameters,
                                                               "module.conv9.weight": [(0, keep)]})],
                           ["thinning_recipes[1]", "no module 'conv9'", "did you mean 'conv2'"]),
        "count-mismatch": ([first, second._replace(modules={**second.modules, "module.conv2": {"out_channels": 11}})],
                           ["thinning_recipes[1]", "'conv2.out_channels' to 11", "keep 12 indices"]),
        "index-out-of-range": ([second._replace(parameters={**second.parameters, "module.conv2.weight": [(0, keep + 4)],
                                                            "module.conv2.bias": [(0, keep + 4)]})],
                               ["thinning_recipes[0] does not fit", "'conv2.out_channels'", "[0, 16)"]),
        "untranslatable-dimension": ([first._replace(parameters={"module.conv1.weight": [(2, torch.tensor([0]))]})],
                                     ["thinning_recipes[0]", "dimension 2 of 'conv1.weight'"]),
        "contradicting-tensors": ([first._replace(parameters={**first.parameters, "module.conv1.bias": (0, keep[:5])})],
                                  ["thinning_recipes[0]", "other 'out_channels' of 'conv1'"]),
    }


@pytest.mark.parametrize("recipes, expected", misfit_recipes().values(), ids=misfit_recipes())
def test_recipes_that_do_not_fit_name_the_recipe_and_module(simplenet_checkpoint, tmp_path, recipes, expected):
    message = convert_error(simplenet_checkpoint(thinning_recipes=recipes), tmp_path)
    assert all(part in message for part in expected), message


def test_weights_that_do_not_fit_after_replay_name_the_entries(simplenet_checkpoint, tmp_path):
    first, _ = simplenet_recipes()
    state = thin_state(parallel_state(build("simplenet_cifar")), first)
    message = convert_error(simplenet_checkpoint(state_dict=state), tmp_path)  # thinned weights, no recipe
    assert "state_dict" in message and "'conv1.weight': 5x3x5x5 in the checkpoint, 6x3x5x5 in the model" in message


def test_masks_that_do_not_fit_are_named(simplenet_checkpoint, tmp_path):
    old = simplenet_checkpoint(compression_sched={"masks_dict": {"module.conv2.weight": torch.ones(3, 3),
                                                                 "module.fc9.weight": torch.ones(2)}})
    message = convert_error(old, tmp_path)
    assert "'conv2.weight': 3x3 in the checkpoint, 16x6x5x5 in the model" in message and "'fc9.weight'" in message


def test_unknown_quantizer_class_and_argument(simplenet_checkpoint, tmp_path):
    metadata = {"type": PostTrainLinearQuantiser, "params": {}, "dummy_input": torch.zeros(1, 3, 32, 32)}
    message = convert_error(simplenet_checkpoint(quantizer_metadata=metadata), tmp_path)
    assert "PostTrainLinearQuantiser'" in message and "did you mean 'PostTrainLinearQuantizer'" in message
    metadata = {"type": PTQ, "params": {"bits_activations": 8, "frobnicate": 1}}
    message = convert_error(simplenet_checkpoint(quantizer_metadata=metadata), tmp_path)
    assert "quantizer_metadata" in message and "'frobnicate'" in message


def test_an_optimizer_that_does_not_fit_is_dropped_with_a_note(simplenet_checkpoint, tmp_path):
    other = torch.optim.SGD(build("resnet20_cifar").parameters(), lr=0.1)
    summary = convert_checkpoint(simplenet_checkpoint(optimizer_state_dict=other.state_dict(),
                                                      optimizer_type=torch.optim.SGD), tmp_path / "new.pth.tar")
    assert summary["optimizer"] is None
    assert summary["dropped"] == [f"the optimizer state (it holds {len(list(other.param_groups[0]['params']))} "
                                  f"parameters, the converted model has 10)"]
    assert "optimizer_state_dict" not in torch.load(tmp_path / "new.pth.tar", weights_only=True)


def test_command_line(simplenet_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "OLD.pth.tar" in capsys.readouterr().out
    assert main([str(simplenet_checkpoint()), str(tmp_path / "new.pth.tar")]) == 0
    assert "differ by at most 0" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing.pth.tar"), str(tmp_path / "other.pth.tar")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error: checkpoint file not found" in error
