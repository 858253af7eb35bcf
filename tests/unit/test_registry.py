"""Every registered class is built from its own YAML example, scheduled on a tiny model, shown to have its
effect and resumed from its saved state.

The examples are the classes' ``YAML::`` docstring blocks (or the ``example=`` given at registration), read
through ``Registry.example``: a class is tested here the moment it is registered, and fails until its docstring
shows one instance that runs on :class:`distiller.testing.TinyCNN` (or on the model :data:`TEST_MODELS` names for
classes that need other layers, e.g. attention heads). Pruners, regularizers and quantizers run
for two epochs; thinning extensions must remove the structures a pruner zeroed (other extensions' effects are
tested in their own files). Each is then rebuilt from the same example on a fresh model, which loads the
scheduler's saved state (through ``torch.load(weights_only=True)``) and must hold the same policy states and
masks. Learning-rate schedulers are compared with their closed forms: those are expected values, not examples.
"""
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch

import distiller
from distiller import registry
from distiller.apputils.checkpoint_fit import replay_model_transforms
from distiller.quantization.replay import replay_quantization
from distiller.testing import TinyCNN, TinyTransformer, train_with_scheduler
from distiller.thinning import StructureRemover

TRAINED_SECTIONS = ("pruners", "regularizers", "quantizers")
#: Classes whose examples need layers TinyCNN lacks -> the tiny model (same 3x8x8 inputs) they run on.
TEST_MODELS = {name: TinyTransformer for name in ("AttentionHeadPruner", "AttentionHeadPruner_AGP", "FFNNeuronPruner",
                                                  "FFNNeuronPruner_AGP")}
REGISTERED = [(section, name) for section in TRAINED_SECTIONS for name in registry.list_classes(section)]


def example_of(section: str, class_name: str) -> dict[str, Any]:
    """The YAML instance (``class`` and arguments) of ``class_name``'s runnable example."""
    example = registry.SECTIONS[section].registry.example(class_name)
    if example is None:
        pytest.fail(f"{class_name} has no runnable example: add a YAML:: block to its docstring holding one "
                    f"'{section}' instance that runs on distiller.testing.TinyCNN (or register it with example=)")
    return {"class": class_name, **example}


def one_policy_schedule(section: str, class_name: str, epochs: list[int]) -> dict[str, Any]:
    """A schedule with ``class_name``'s example as its only instance, scheduled on ``epochs``."""
    return {"version": 1, section: {"instance": example_of(section, class_name)},
            "policies": [{registry.SECTIONS[section].policy_key: {"instance_name": "instance"}, "epochs": epochs}]}


def build(schedule: dict[str, Any], transforms: Sequence[dict[str, Any]] = ()
          ) -> tuple[torch.nn.Module, torch.optim.Optimizer, distiller.CompressionScheduler]:
    """A seeded TinyCNN (or the TEST_MODELS entry of the schedule's class) with ``transforms`` replayed on it (as
    ``load_checkpoint`` does), its optimizer and the scheduler of ``schedule``."""
    torch.manual_seed(0)
    instances = [instance["class"] for section in TRAINED_SECTIONS for instance in schedule.get(section, {}).values()]
    model = next((TEST_MODELS[name] for name in instances if name in TEST_MODELS), TinyCNN)()
    replay_model_transforms(model, list(transforms))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, distiller.config.dict_config(model, optimizer, schedule)


def through_checkpoint(state: Any) -> Any:
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)``: checkpoints hold plain data."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(actual: Any, expected: Any, path: str) -> None:
    """Nested dicts/lists equal, tensors compared by ``torch.equal`` (and dtype)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and actual.dtype == expected.dtype \
            and torch.equal(actual, expected), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, Mapping):
        assert isinstance(actual, Mapping) and set(actual) == set(expected), \
            f"{path}: keys {list(actual) if isinstance(actual, Mapping) else actual!r} != {list(expected)}"
        for key, value in expected.items():
            assert_same(actual[key], value, f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for index, (item, value) in enumerate(zip(actual, expected)):
            assert_same(item, value, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def set_masks(scheduler: distiller.CompressionScheduler) -> dict[str, torch.Tensor]:
    """The masks ``scheduler`` holds (parameters without one are left out: a scheduler built on a model that
    was already quantized also lists the parameters its quantizer added, e.g. PACT's clipping values)."""
    return {name: masker.mask for name, masker in scheduler.zeros_mask_dict.items() if masker.mask is not None}


def assert_resumes(schedule: dict[str, Any], scheduler: distiller.CompressionScheduler) -> None:
    """A fresh model and scheduler built from ``schedule`` that load ``scheduler``'s saved state hold its
    policies' states, its masks and its model transforms."""
    saved = through_checkpoint(scheduler.state_dict())
    _, _, resumed = build(schedule, saved["model_transforms"])
    resumed.load_state_dict(saved)
    originals, restored = list(scheduler.sched_metadata), list(resumed.sched_metadata)
    assert [type(p) for p in restored] == [type(p) for p in originals]
    for original, policy in zip(originals, restored):
        assert_same(policy.state_dict(), original.state_dict(), f"{type(original).__name__}.state_dict()")
    assert_same(set_masks(resumed), set_masks(scheduler), "masks")
    assert_same(resumed.model_transforms, scheduler.model_transforms, "model_transforms")


def assert_post_training_quantizer_replays(class_name: str, inputs: torch.Tensor) -> None:
    """A post-training quantizer has no policy: its state is the record ``load_checkpoint`` replays on a fresh
    model, which must get the same quantizer, the same modules and the same outputs."""
    example = example_of("quantizers", class_name)
    torch.manual_seed(0)
    model = TinyCNN().eval()
    quantizer = registry.QUANTIZERS.get(class_name)(model, **{k: v for k, v in example.items() if k != "class"})
    quantizer.prepare_model(torch.zeros_like(inputs[:1]))
    modules = {name: type(module) for name, module in model.named_modules()}
    assert modules != {name: type(module) for name, module in TinyCNN().named_modules()}, \
        "quantizer replaced no module"
    fresh = TinyCNN().eval()
    replayed = replay_quantization(fresh, through_checkpoint({"quantizer": quantizer.state_dict()}))
    assert_same(replayed.state_dict(), quantizer.state_dict(), f"{class_name}.state_dict()")
    assert {name: type(module) for name, module in fresh.named_modules()} == modules
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(inputs), model(inputs))


@pytest.mark.parametrize("section, class_name", REGISTERED, ids=[f"{s}:{n}" for s, n in REGISTERED])
def test_registered_class_builds_from_its_example_runs_and_resumes(section, class_name, batches):
    schedule = one_policy_schedule(section, class_name, epochs=[1, 2])
    if not registry.SECTIONS[section].registry.entry(class_name).trains:
        # inference only: a training schedule is refused up front; the quantizer is applied after training
        with pytest.raises(distiller.ScheduleError, match="cannot be trained"):
            build(schedule)
        assert_post_training_quantizer_replays(class_name, batches[0][0])
        return
    modules_before = {name: type(module) for name, module in TinyCNN().named_modules()}
    model, optimizer, scheduler = build(schedule)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    assert_resumes(schedule, scheduler)

    policy = scheduler.policies[1][0]
    if section == "pruners":
        masks = [scheduler.zeros_mask_dict[name].mask for name in policy.param_names]
        assert all(mask is not None for mask in masks), "pruner set no mask"
    elif section == "regularizers" and class_name == "DropFilterRegularizer":
        # DropFilter adds no loss term: it zeroes random filters' outputs during training forward passes.
        outputs = []
        model.conv2.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        model.train()
        scheduler.on_minibatch_begin(1, 0, 1, optimizer)
        model(batches[0][0])
        assert (outputs[-1].abs().sum(dim=(0, 2, 3)) == 0).any(), "no filter was dropped"
    elif section == "regularizers":
        loss = scheduler.before_backward_pass(1, 0, 1, torch.tensor(0.0), return_loss_components=True)
        assert float(loss.loss_components[0].value.detach()) > 0, "regularizer added no loss"
    else:
        assert {name: type(module) for name, module in model.named_modules()} != modules_before, \
            "quantizer replaced no module"
    assert torch.isfinite(model(batches[0][0])).all()


BASE_LR = 0.1


def _one_cycle_warmup(k: int) -> float:
    """OneCycleLR (Smith & Topin 2018) in its first phase: cosine from max_lr / 25 up to max_lr over 2 steps."""
    start, end = 0.1 / 25, 0.1
    return end + (start - end) * (1 + math.cos(math.pi * k / 2)) / 2


def _triangular(k: int) -> float:
    """CyclicLR's triangular policy (Smith 2017, Cyclical Learning Rates) with step size 1 between 0.01 and 0.1."""
    cycle = math.floor(1 + k / 2)
    return 0.01 + (0.1 - 0.01) * max(0.0, 1 - abs(k - 2 * cycle + 1))


# YAML arguments and the learning rate after k scheduler steps, written from each scheduler's definition
# (not computed by the scheduler), for an optimizer whose initial learning rate is BASE_LR.
LR_CLOSED_FORMS = {
    "ConstantLR": ({"factor": 0.5, "total_iters": 1}, lambda k: BASE_LR * (0.5 if k < 1 else 1.0)),
    "CosineAnnealingLR": ({"T_max": 2}, lambda k: BASE_LR * (1 + math.cos(math.pi * k / 2)) / 2),
    "CosineAnnealingWarmRestarts": ({"T_0": 2}, lambda k: BASE_LR * (1 + math.cos(math.pi * (k % 2) / 2)) / 2),
    "CyclicLR": ({"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 1}, _triangular),
    "ExponentialLR": ({"gamma": 0.5}, lambda k: BASE_LR * 0.5 ** k),
    "LinearLR": ({"start_factor": 0.5, "total_iters": 2}, lambda k: BASE_LR * (0.5 + 0.5 * min(k, 2) / 2)),
    "MultiStepLR": ({"milestones": [2], "gamma": 0.5}, lambda k: BASE_LR * (0.5 if k >= 2 else 1.0)),
    "MultiStepMultiGammaLR": ({"milestones": [1, 2], "gammas": [0.5, 0.2]},
                              lambda k: BASE_LR * (0.5 if k >= 1 else 1.0) * (0.2 if k >= 2 else 1.0)),
    "OneCycleLR": ({"max_lr": 0.1, "total_steps": 10}, _one_cycle_warmup),
    "PolynomialLR": ({"T_max": 4, "power": 2}, lambda k: BASE_LR * (1 - k / 4) ** 2),
    # fed a constant metric: the first step sets the best value, every later one is a plateau
    "ReduceLROnPlateau": ({"mode": "max", "patience": 0, "factor": 0.5}, lambda k: BASE_LR * 0.5 ** max(0, k - 1)),
    "StepLR": ({"step_size": 2, "gamma": 0.5}, lambda k: BASE_LR * 0.5 ** (k // 2)),
}


@pytest.mark.parametrize("class_name", registry.list_classes("lr_schedulers"))
def test_lr_scheduler_follows_its_definition_at_the_scheduled_epochs(class_name):
    assert class_name in LR_CLOSED_FORMS, f"add YAML arguments and the closed form of {class_name} to LR_CLOSED_FORMS"
    args, lr_after = LR_CLOSED_FORMS[class_name]
    expected = [lr_after(0), lr_after(0), lr_after(1), lr_after(2), lr_after(2)]
    assert len(set(expected)) > 1, "the example arguments must make the learning rate change"
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, {
        "version": 1, "lr_schedulers": {"lr": dict({"class": class_name}, **args)},
        "policies": [{"lr_scheduler": {"instance_name": "lr"}, "epochs": [1, 2]}]})
    lrs = [optimizer.param_groups[0]["lr"]]
    for epoch in range(4):  # the scheduler steps at the end of epochs 1 and 2 only
        scheduler.on_epoch_begin(epoch, optimizer)
        optimizer.step()  # no gradients: changes nothing, but keeps torch's step-order check quiet
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": 1.0, "max": 50.0})
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)



# Each thinning function and the structures a pruner must zero first for it to have something to remove.
THINNING_PRUNERS = {"remove_filters": "Filters", "remove_channels": "Channels"}


@pytest.mark.parametrize("class_name", registry.list_classes("extensions"))
def test_extension_runs_from_its_example_and_resumes(class_name, batches):
    schedule = one_policy_schedule("extensions", class_name, epochs=[1])
    thinning = schedule["extensions"]["instance"].get("thinning_func_str") \
        if issubclass(registry.EXTENSIONS.get(class_name), StructureRemover) else None
    if thinning is not None:  # a pruner zeroes half of conv2's filters or channels at epoch 0, for it to remove
        assert thinning in THINNING_PRUNERS, f"{class_name}'s example must thin with one of {list(THINNING_PRUNERS)}"
        schedule["pruners"] = {"half": {"class": "L1RankedStructureParameterPruner", "desired_sparsity": 0.5,
                                        "group_type": THINNING_PRUNERS[thinning], "weights": ["conv2.weight"]}}
        schedule["policies"].insert(0, {"pruner": {"instance_name": "half"}, "epochs": [0]})
    model, optimizer, scheduler = build(schedule)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
    assert (model.conv2.weight.shape, model.conv1.weight.shape) == ((16, 8, 3, 3), (8, 3, 3, 3)), \
        "the extension thinned before its epoch"
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=2, start_epoch=1)
    assert_resumes(schedule, scheduler)
    if thinning == "remove_filters":  # conv2's zero filters go, with their BN and fc inputs
        assert model.conv2.weight.shape == (8, 8, 3, 3)
        assert (model.bn2.num_features, model.fc.in_features) == (8, 8)
        assert (model.conv2.weight.abs().sum(dim=(1, 2, 3)) > 0).all(), "a kept filter is a zeroed one"
    elif thinning == "remove_channels":  # conv2's zero input channels go, and the conv1 filters (and BN) feeding them
        assert model.conv2.weight.shape == (16, 4, 3, 3)
        assert (model.conv1.weight.shape[0], model.bn1.num_features) == (4, 4)
        assert (model.conv2.weight.abs().sum(dim=(0, 2, 3)) > 0).all(), "a kept channel is a zeroed one"
    assert model(batches[0][0]).shape == (8, 10)
