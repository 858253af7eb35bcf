"""Replays the model changes recorded in a Distiller checkpoint (thinning recipes, quantizer) on our models.

Distiller's ``ThinningRecipe`` lists new module attributes (``{'conv1': {'out_channels': 12}}``) and, per
parameter, the indices each changed dimension keeps (``{'conv1.weight': [(0, tensor([0, 2, ...]))]}``);
our :class:`~distiller.thinning.ThinningRecipe` maps each module dimension to its kept indices. Each recipe
is translated and checked against the model, then replayed and recorded with
``CompressionScheduler.record_transform``, as is the quantizer rebuilt from ``quantizer_metadata``, so the
converted checkpoint replays both when :func:`~distiller.apputils.load_checkpoint` loads it.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from torch import nn

from ..errors import CheckpointError, UserError, suggest, summarize_names
from ..quantization.base import Quantizer
from ..registry import QUANTIZERS
from ..scheduler import CompressionScheduler
from ..thinning import ThinningRecipe, apply_thinning_recipe
from ..utils import normalize_module_name
from .distiller_unpickler import DistillerRecipe, reference_path

__all__ = ["recipe_from_distiller", "replay_distiller_recipes", "replay_distiller_quantizer"]

#: Per layer type, per tensor: the module attribute that each dimension of the tensor follows.
_TENSOR_DIMENSIONS: tuple[tuple[tuple[type[nn.Module], ...], dict[str, tuple[str, ...]]], ...] = (
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), {"weight": ("out_channels", "in_channels"), "bias": ("out_channels",)}),
    ((nn.Linear,), {"weight": ("out_features", "in_features"), "bias": ("out_features",)}),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
     {name: ("num_features",) for name in ("weight", "bias", "running_mean", "running_var")}),
)
#: Distiller kept the selection of a BatchNorm's running statistics among the module directives.
_STATISTICS = ("running_mean", "running_var")
#: Quantizer arguments that Distiller's base class recorded under other names than ours.
_ALIASES = {"bits_weights": "bits_parameters", "bits_bias": "bits_accum"}


def _dimension(module: nn.Module, tensor_name: str, dim: int) -> Optional[str]:
    for layer_types, tensors in _TENSOR_DIMENSIONS:
        if isinstance(module, layer_types):
            dims = tensors.get(tensor_name, ())
            return dims[dim] if 0 <= dim < len(dims) else None
    return None


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and 1 < module.groups == module.in_channels


class _Translation:
    """Collects ``{module: {dimension: kept indices}}`` from one Distiller recipe, checking it as it goes."""

    def __init__(self, model: nn.Module, where: str) -> None:
        self.where = where
        self.modules = {normalize_module_name(name): module for name, module in model.named_modules()}
        self.keep: dict[str, dict[str, torch.Tensor]] = {}

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.where} {message}: was the checkpoint saved from another architecture? Pass "
                               f"the --arch it was trained with")

    def module(self, name: str, what: str) -> nn.Module:
        module = self.modules.get(normalize_module_name(name))
        if module is None:
            hint = suggest(normalize_module_name(name), self.modules)
            raise self.fail(f"names {what}, but the model has no module '{normalize_module_name(name)}'"
                            + (f" (did you mean {hint}?)" if hint else ""))
        return module

    def add_directive(self, module_name: str, module: nn.Module, tensor_name: str, directive: Any) -> None:
        """Adds one ``(dim, indices[, view before, view after])`` directive for ``module_name.tensor_name``."""
        what = f"'{module_name}.{tensor_name}'"
        if not (isinstance(directive, (tuple, list)) and len(directive) in (2, 4) and isinstance(directive[0], int)):
            raise self.fail(f"holds a directive for {what} that is not (dim, indices) or (dim, indices, view, view)")
        dim, keep = directive[0], torch.as_tensor(directive[1], dtype=torch.long).reshape(-1)
        attr = _dimension(module, tensor_name, dim)
        if attr is None:
            raise self.fail(f"selects along dimension {dim} of {what} ({type(module).__name__}), which thinning "
                            f"cannot replay")
        if len(directive) == 4:
            keep = self._flattened(module, what, attr, keep, directive[2])
        self.add(module_name, attr, keep, what)

    def _flattened(self, module: nn.Module, what: str, attr: str, keep: torch.Tensor,
                   view: Sequence[int]) -> torch.Tensor:
        """Kept channels of a convolution's output as kept features of the Linear layer that reads it flattened
        (Distiller selected them on the weight viewed as ``[out, channels, height, width]``)."""
        per_channel = math.prod(int(size) for size in view[2:])
        if not (isinstance(module, nn.Linear) and attr == "in_features" and len(view) >= 2
                and int(view[1]) * per_channel == module.in_features):
            raise self.fail(f"views {what} as {tuple(view)}, which does not match the input features of a Linear layer")
        return (keep.unsqueeze(1) * per_channel + torch.arange(per_channel)).reshape(-1)

    def add(self, module_name: str, attr: str, keep: torch.Tensor, what: str) -> None:
        dims = self.keep.setdefault(normalize_module_name(module_name), {})
        if attr in dims and not torch.equal(dims[attr], keep):
            raise self.fail(f"keeps other '{attr}' of '{normalize_module_name(module_name)}' for {what} than for "
                            f"its other tensors")
        dims[attr] = keep

    def check_attribute(self, module_name: str, module: nn.Module, attr: str, value: Any) -> None:
        """Checks a module directive ``attr = value`` against the kept indices (all collected by now)."""
        dims = self.keep.get(normalize_module_name(module_name), {})
        if attr in ("in_channels", "groups") and _is_depthwise(module) and "out_channels" in dims:
            # A depthwise convolution: its output channels carry the selection, one group per channel.
            dims.setdefault("in_channels", dims["out_channels"])
            attr = "in_channels"
        if attr not in dims:
            raise self.fail(f"sets '{module_name}.{attr}' to {value!r} without saying which indices it keeps")
        if not isinstance(value, int) or value != dims[attr].numel():
            raise self.fail(f"sets '{module_name}.{attr}' to {value!r}, but its parameter directives keep "
                            f"{dims[attr].numel()} indices")


def _directives(value: Any) -> list[Any]:
    """A parameter's directives: Distiller's first recipes held one tuple, later ones a list of them."""
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def recipe_from_distiller(model: nn.Module, recipe: Any, where: str) -> ThinningRecipe:
    """Translates a Distiller ``ThinningRecipe`` into ours, for ``model`` in its current shape.

    Args:
        model: the model the recipe is about to be replayed on (earlier recipes already replayed).
        recipe: a :class:`~distiller.apputils.distiller_unpickler.DistillerRecipe`.
        where: how messages name the recipe, e.g. ``"'old.pth.tar' thinning_recipes[0]"``.
    Raises:
        CheckpointError: the recipe names modules or tensors the model lacks, or its directives contradict
            each other (naming the recipe and the module or parameter).
    """
    if not isinstance(recipe, DistillerRecipe):
        raise CheckpointError(f"{where} is a {type(recipe).__name__}, not a Distiller ThinningRecipe "
                              f"(modules, parameters)")
    translation = _Translation(model, where)
    for param_name, directives in recipe.parameters.items():
        module_name, _, tensor_name = normalize_module_name(param_name).rpartition(".")
        module = translation.module(module_name, f"parameter '{param_name}'")
        for directive in _directives(directives):
            translation.add_directive(module_name, module, tensor_name, directive)
    attributes = []
    for module_name, settings in recipe.modules.items():
        module = translation.module(module_name, f"module '{module_name}'")
        for attr, value in settings.items():
            if attr in _STATISTICS:
                translation.add_directive(normalize_module_name(module_name), module, attr, value)
            else:
                attributes.append((normalize_module_name(module_name), module, attr, value))
    for module_name, module, attr, value in attributes:
        translation.check_attribute(module_name, module, attr, value)
    return ThinningRecipe(translation.keep)


def replay_distiller_recipes(model: nn.Module, recipes: Any, scheduler: CompressionScheduler, source: str) -> int:
    """Replays Distiller's ``thinning_recipes`` on ``model`` in order and records each in ``scheduler``.

    Returns:
        the number of recipes replayed.
    Raises:
        CheckpointError: a recipe that does not fit the model, naming it (``thinning_recipes[i]``) and the
            module or parameter.
    """
    if not isinstance(recipes, (list, tuple)):
        raise CheckpointError(f"'{source}' thinning_recipes is a {type(recipes).__name__}, not a list of recipes")
    for index, distiller_recipe in enumerate(recipes):
        where = f"'{source}' thinning_recipes[{index}]"
        recipe = recipe_from_distiller(model, distiller_recipe, where)
        try:
            apply_thinning_recipe(model, recipe)
        except UserError as err:
            raise CheckpointError(f"{where} does not fit the model: {err}") from err
        record = recipe.to_record()
        scheduler.record_transform(record.pop("kind"), record)
    return len(recipes)


def _quantizer_arguments(cls: type[Quantizer], params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Distiller's recorded constructor arguments as ``cls``'s keyword arguments (renamed ones mapped)."""
    accepted = [name for name in inspect.signature(cls).parameters if name not in ("model", "optimizer")]
    kwargs = {key: value for key, value in params.items() if key in accepted}
    unknown = []
    for key, value in params.items():
        if key in accepted:
            continue
        if _ALIASES.get(key) in accepted:
            kwargs.setdefault(_ALIASES[key], value)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{where} gives {cls.__name__} argument(s) it does not take: {summarize_names(unknown)} "
                              f"(it takes {', '.join(accepted)})")
    return kwargs


def replay_distiller_quantizer(model: nn.Module, metadata: Any, scheduler: CompressionScheduler, source: str,
                               example_input: torch.Tensor) -> Quantizer:
    """Rebuilds the quantizer of Distiller's ``quantizer_metadata`` (``{'type', 'params', 'dummy_input'}``),
    prepares ``model`` with it and records it in ``scheduler``.

    Args:
        example_input: used when the metadata holds no ``dummy_input`` tensor (older Distiller versions).
    Returns:
        the quantizer.
    Raises:
        CheckpointError: an unknown quantizer class (naming close matches), arguments it does not take, or
            a quantizer that cannot prepare this model.
    """
    where = f"'{source}' quantizer_metadata"
    if not isinstance(metadata, Mapping) or "type" not in metadata:
        raise CheckpointError(f"{where} has no quantizer 'type': it is not Distiller's quantizer metadata")
    path = reference_path(metadata["type"]) or repr(metadata["type"])
    name = path.rpartition(".")[2]
    if name not in QUANTIZERS:
        hint = suggest(name, QUANTIZERS.names())
        raise CheckpointError(f"{where} names quantizer class '{path}', which has no counterpart here"
                              + (f" (did you mean {hint}?)" if hint else "")
                              + f"; known quantizers: {', '.join(QUANTIZERS.names())}")
    cls = QUANTIZERS.get(name)
    kwargs = _quantizer_arguments(cls, metadata.get("params") or {}, where)
    dummy_input = metadata.get("dummy_input")
    if not isinstance(dummy_input, torch.Tensor):
        dummy_input = example_input
    try:
        quantizer = cls(model, **kwargs)
        quantizer.prepare_model(dummy_input)
        quantizer.quantize_params()
    except UserError as err:
        raise CheckpointError(f"{where} ({name}) cannot be replayed on this model: {err}") from err
    # Post-training quantizers store integer codes in the weights: their masks have done their job.
    scheduler.record_transform("quantization", {"quantizer": quantizer.state_dict()},
                               keep_masks=QUANTIZERS.entry(name).trains)
    return quantizer
