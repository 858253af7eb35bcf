"""Physical removal of channels: shrink modules, parameters, gradients, optimizer state and masks.

Parameters are shrunk in place (``param.set_(...)``), so the optimizer's references and gradient hooks
stay valid; every optimizer state tensor shaped like the parameter (SGD's ``momentum_buffer``, Adam's
``exp_avg`` and ``exp_avg_sq``, ...) and every mask is sliced the same way. All checks run before the
first change, so a rejected request leaves the model untouched.
"""
from typing import NamedTuple, Optional, Sequence, cast

import torch
from torch import nn

from ..graph import WrapperRule, unwrap
from ..graph.layer_rules import LayerRule, layer_rule_for
from ..utils import normalize_module_name
from .followers import following_edits
from .plan import ThinningError

__all__ = ["check_edits", "apply_edits", "dimensions_of", "Edit"]


class Edit(NamedTuple):
    """One dimension to shrink: the module's name, the layer computing it (the module itself, or the layer its
    quantization wrappers hold), the layer's path below the module, the wrappers, the attribute and the kept
    positions."""
    name: str
    layer: nn.Module
    layer_path: str
    wrappers: list[tuple[nn.Module, WrapperRule]]
    attr: str
    keep: torch.Tensor

    @property
    def layer_name(self) -> str:
        return f"{self.name}.{self.layer_path}" if self.layer_path else self.name

    def own_parameters(self) -> list[nn.Parameter]:
        """The parameters of the layer and of its wrappers themselves (not of their other children)."""
        modules = [self.layer] + [wrapper for wrapper, _ in self.wrappers]
        return [p for module in modules for p in module.parameters(recurse=False)]


def _rule(module: nn.Module) -> LayerRule:
    """The layer rule of a module :func:`check_edits` accepted (it has one)."""
    return cast(LayerRule, layer_rule_for(module))


def dimensions_of(module: nn.Module) -> tuple[str, ...]:
    """The dimension attributes thinning can shrink in ``module`` (from its layer rule; for a wrapper, from the
    rule of the layer it holds)."""
    rule = layer_rule_for(unwrap(module)[0])
    return tuple(rule.dims) if rule is not None else ()


def check_edits(model: nn.Module, modules: dict) -> list[Edit]:
    """Validates ``{module_name: {attr: keep indices}}`` against ``model``; returns the :class:`Edit` list.

    Raises:
        ThinningError: for an unknown module or dimension, or indices that do not fit.
    """
    edits = []
    by_name = {normalize_module_name(name): module for name, module in model.named_modules()}
    for name, dims in modules.items():
        module = by_name.get(normalize_module_name(name))
        if module is None:
            raise ThinningError(f"thinning names module '{name}', which the model does not have: was the "
                                f"recipe made for another architecture?")
        layer, layer_path, wrappers = unwrap(module)
        for attr, keep in dims.items():
            if attr not in dimensions_of(layer):
                raise ThinningError(f"cannot thin '{attr}' of '{name}' ({type(layer).__name__}); thinnable "
                                    f"dimensions: {list(dimensions_of(layer))}")
            keep = torch.as_tensor(keep, dtype=torch.long).reshape(-1)
            size = getattr(layer, attr)
            if keep.numel() == 0 or keep[0] < 0 or keep[-1] >= size or not bool((keep[1:] > keep[:-1]).all()):
                raise ThinningError(f"kept indices of '{name}.{attr}' must be increasing, within [0, {size}) "
                                    f"and not empty; got {keep.numel()} indices: is the recipe applied twice?")
            problem = _rule(layer).check(layer, attr, keep)
            if problem:
                raise ThinningError(f"cannot keep {keep.numel()} of the {size} '{attr}' of '{name}': {problem}")
            edits.append(Edit(normalize_module_name(name), layer, layer_path, wrappers, attr, keep))
    return edits


class _Surgeon:
    def __init__(self, optimizer, mask_dicts):
        self.optimizer = optimizer
        self.masks = [{normalize_module_name(k): m for k, m in d.items()} for d in mask_dicts]

    def check_optimizer(self, params):
        if self.optimizer is None:
            return
        for param in params:
            for key, value in self.optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.numel() > 1 and value.shape != param.shape:
                    raise ThinningError(f"{type(self.optimizer).__name__} state '{key}' has shape "
                                        f"{tuple(value.shape)}, unlike its parameter {tuple(param.shape)}: "
                                        f"thinning cannot slice it; thin before creating the optimizer state")

    def edit(self, module_names, module, tensor_name, fn):
        """Slices ``module``'s ``tensor_name`` with ``fn``, and its masks, which may be kept under any of
        ``module_names`` (a quantized layer's own name and its wrapper's)."""
        tensor = getattr(module, tensor_name)
        if not isinstance(tensor, nn.Parameter):
            setattr(module, tensor_name, fn(tensor))
            return
        old_shape = tensor.shape
        with torch.no_grad():
            grad = fn(tensor.grad) if tensor.grad is not None else None
            # set_ (unlike assigning .data) also renews autograd's cached gradient accumulator, whose
            # recorded shape would otherwise clash with the new one while an old graph (a loss) is alive.
            tensor.set_(fn(tensor.detach()))
            tensor.grad = grad
            if self.optimizer is not None:
                state = self.optimizer.state.get(tensor, {})
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.shape == old_shape:
                        state[key] = fn(value)
        maskers = {id(m): m for masks in self.masks for name in module_names
                   if (m := masks.get(normalize_module_name(f"{name}.{tensor_name}"))) is not None}
        for masker in maskers.values():
            if masker.mask is not None and masker.mask.shape == old_shape:
                masker.mask = fn(masker.mask)
            if getattr(masker, "unmasked_copy", None) is not None:
                masker.unmasked_copy = fn(masker.unmasked_copy)


def apply_edits(model: nn.Module, modules: dict, optimizer: Optional[torch.optim.Optimizer] = None,
                mask_dicts: Sequence[dict] = (), note_ranges: bool = False) -> None:
    """Shrinks ``model`` in place: ``modules`` maps module names to ``{attr: kept indices}``.

    A quantized layer's float copy and quantization parameters follow its tensors
    (:mod:`~distiller.thinning.followers`); a quantization wrapper is shrunk as the layer it holds.

    Args:
        model: the model (DataParallel prefixes in names are ignored).
        modules: e.g. ``{'conv1': {'out_channels': [0, 2, 3]}, 'bn1': {'num_features': [0, 2, 3]}}``.
        optimizer: optional; its per-parameter state is sliced along with the parameters.
        mask_dicts: name -> ParameterMasker dicts whose masks are sliced too.
        note_ranges: log the quantization ranges of quantization-aware training that the removal narrows
            (:func:`~distiller.thinning.followers.following_edits`); off when replaying a recipe.
    Raises:
        ThinningError: before any change, for a request that does not fit the model or its optimizer.
    """
    edits = check_edits(model, modules)
    owners: dict[int, str] = {}
    for edit in edits:
        for param in edit.own_parameters():
            if owners.setdefault(id(param), edit.name) != edit.name:
                raise ThinningError(f"'{edit.name}' and '{owners[id(param)]}' share a parameter: thinning cannot "
                                    f"shrink tied weights")
    surgeon = _Surgeon(optimizer, mask_dicts)
    surgeon.check_optimizer([p for edit in edits for p in edit.own_parameters()])
    # Input dims first: a grouped layer's selections assume the per-group counts of the other dimension.
    for edit in sorted(edits, key=lambda e: _rule(e.layer).dims[e.attr] != "in"):
        names = list(dict.fromkeys([edit.layer_name, edit.name]))
        tensor_edits, attributes = _rule(edit.layer).edits(edit.layer, edit.attr, edit.keep)
        for tensor_name, fn in tensor_edits:
            followers = following_edits(edit.layer_name, edit.layer, edit.wrappers, tensor_name, fn, note_ranges)
            surgeon.edit(names, edit.layer, tensor_name, fn)
            for owner, owner_tensor, owner_fn in followers:
                surgeon.edit(names if owner is edit.layer else [], owner, owner_tensor, owner_fn)
        for key, value in attributes.items():
            setattr(edit.layer, key, value)
