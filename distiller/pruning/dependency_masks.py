"""``group_dependency: Graph``: structured pruning on the model's real channel dependency groups.

With ``Graph`` a ranked structure pruner does not mask each weight on its own: it ranks *channels* of the
:class:`~distiller.graph.DependencyGraph` and zeros each chosen channel everywhere it lives, i.e. exactly
what thinning would remove with it:

* the targeted weights choose the channels to rank: the filters (``'Filters'``) or input channels
  (``'Channels'``) of every targeted weight; a channel's importance is the sum, over the targeted weights
  holding it, of the criterion's score (each weight's scores divided by their mean);
* each dependency group (a residual stream, a concatenation read by one layer, the convolutions around a
  depthwise one...) loses the target fraction of its ranked, removable channels; layout constraints (equal
  counts per group of a grouped convolution, no empty layer) and the thinned-shape check apply as in
  thinning, so every zeroed channel can be removed;
* the masks cover every parameter slice of a chosen channel: the filters and biases producing it, the
  BatchNorm (or other norm) weight and bias it passes through, the weights reading it. So a pruned filter is
  exactly zero downstream, and masked and thinned models compute the same outputs. Under quantization-aware
  training the masks are those of the float copies (named as the schedule names the weights: ``conv1.weight``).

The graph comes from an example input: ``dummy_input``, else the input of the model's first forward pass
seen since the pruner was built, else zeros shaped like ``dataset``'s images.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional, cast

import torch
from torch.utils.hooks import RemovableHandle

from ..errors import ArgumentError
from ..graph import DependencyGraph
from ..graph.capture import zeros_like_inputs
from ..masking import named_scheduled_parameters, trained_parameter
from ..utils import model_device, normalize_module_name
from .base import MaskDict
from .importance import Importance, Structures, owning_module_name

msglogger = logging.getLogger(__name__)

__all__ = ["DependencyMasks"]

_ROLE = {"Filters": "out", "Channels": "in"}


def _parameter_masks(deps: DependencyGraph, module_name: str, attr: str, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """0/1 masks (by tensor attribute name) of the elements that thinning keeps when ``attr`` of the module
    ``module_name`` keeps ``keep``: the layer rule's slicing applied to element indices."""
    module = deps.module(module_name)
    edits, _ = deps.rule(module_name).edits(module, attr, keep)
    masks = {}
    for tensor_name, slicer in edits:
        tensor = trained_parameter(module, tensor_name)  # a quantized layer's float copy
        if tensor is None:
            continue
        ids = torch.arange(tensor.numel()).reshape(tensor.shape)
        mask = torch.zeros(tensor.numel())
        mask[slicer(ids).reshape(-1)] = 1.0
        masks[tensor_name] = mask.reshape(tensor.shape)
    return masks


class DependencyMasks:
    """The ``Graph`` dependency of a ranked structure pruner (see the module docstring).

    Args:
        name: the pruner's name (for messages).
        group_type: ``'Filters'`` or ``'Channels'``.
        dummy_input: optional example input (tensor or tuple).
        dataset: optional dataset name whose image shape is the fallback example input.
    """

    def __init__(self, name: str, group_type: str, dummy_input: Any = None, dataset: Optional[str] = None) -> None:
        if group_type not in _ROLE:
            raise ArgumentError(f"{name}: group_dependency 'Graph' prunes 'Filters' or 'Channels', not "
                                f"{group_type!r}")
        if dataset is not None:
            from ..models import check_dataset
            check_dataset(dataset)
        self.name, self.role = name, _ROLE[group_type]
        self.dummy_input, self.dataset = dummy_input, dataset
        self._recorded: Optional[tuple] = None
        self._hook: Optional[RemovableHandle] = None
        self._deps: Optional[DependencyGraph] = None
        self._deps_key: Optional[tuple] = None
        self.companions: set[str] = set()

    # ------------------------------------------------------------------------------ example input
    def watch(self, model: torch.nn.Module) -> None:
        """Records the model's next forward input (as zeros, batch of one) for building the graph."""
        if self.dummy_input is None and self._recorded is None and self._hook is None:
            self._hook = model.register_forward_pre_hook(self._record)

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        self._recorded = zeros_like_inputs(args)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _example_input(self, model: torch.nn.Module) -> Any:
        if self.dummy_input is not None:
            return self.dummy_input
        if self._recorded is not None:
            return self._recorded
        if self.dataset is not None:
            from ..models import dataset_input_shape
            return torch.zeros(dataset_input_shape(self.dataset), device=model_device(model))
        raise ArgumentError(f"{self.name}: group_dependency 'Graph' builds the model's graph from an example "
                            f"input: pass dummy_input=torch.randn(1, C, H, W) (Python), dataset: <name> (YAML), "
                            f"or run a forward pass through the model before the first pruning step")

    def graph(self, model: torch.nn.Module) -> DependencyGraph:
        """The model's dependency graph, rebuilt when a parameter's shape changed (e.g. after thinning)."""
        key = (id(model), tuple((n, tuple(p.shape)) for n, p in model.named_parameters()))
        if self._deps is None or key != self._deps_key:
            self._deps, self._deps_key = DependencyGraph(model, self._example_input(model)), key
        return self._deps

    # ---------------------------------------------------------------------------------- masking
    def masks(self, model: torch.nn.Module, targeted: list[tuple[str, torch.Tensor]], group_type: str,
              score: Callable[[Structures], torch.Tensor], importance: Importance, fraction: float,
              group_size: int, rounding_fn: Callable, noise: float) -> dict[str, torch.Tensor]:
        """Masks of every parameter that the channels chosen for ``fraction`` touch, by parameter name
        (targeted weights without pruned channels get all-ones masks).

        Args:
            targeted: ``(param_name, param)`` of the pruner's weights.
            score: the pruner's call of ``importance`` on a :class:`Structures`.
            importance: its criterion (for :meth:`Importance.keep_mask`).
            fraction, group_size, rounding_fn, noise: as the pruner's.
        """
        deps = self.graph(model)
        scores, scored = self._channel_scores(deps, targeted, group_type, score)
        remove = torch.zeros(deps.size, dtype=torch.bool)
        blocked = deps.blocked_mask()
        for group in deps.groups():
            channels = torch.tensor(group.channels)
            candidates = channels[scored[channels] & ~blocked[channels]]
            if candidates.numel():
                keep = importance.keep_mask(scores[candidates], fraction, group_size, rounding_fn, noise)
                remove[candidates[~keep.cpu()]] = True
        keep, _ = deps.removable(lambda d: remove & ~d.blocked_mask(), scores)
        masks = self._masks(model, deps, keep)
        for name, param in targeted:
            masks.setdefault(name, torch.ones_like(param))
        msglogger.debug("%s: %d of %d ranked channels zeroed (target %.3f), %d parameters masked", self.name,
                        int((~keep & scored).sum()), int(scored.sum()), fraction, len(masks))
        return masks

    def _channel_scores(self, deps: DependencyGraph, targeted: list[tuple[str, torch.Tensor]], group_type: str,
                        score: Callable[[Structures], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.zeros(deps.size, dtype=torch.float64)
        scored = torch.zeros(deps.size, dtype=torch.bool)
        for param_name, param in targeted:
            module_name = normalize_module_name(owning_module_name(param_name))
            attr = self._ranked_dimension(deps, module_name, param_name, param)
            structures = Structures(param, param_name, owning_module_name(param_name), group_type,
                                    functools.partial(self._rows, deps, module_name, attr))
            values = score(structures).detach().double().cpu()
            channels = deps.channels(module_name, attr)
            scores.index_add_(0, channels, values / values.mean().clamp_min(1e-12))
            scored[channels] = True
        return scores, scored

    @staticmethod
    def _rows(deps: DependencyGraph, module_name: str, attr: str, tensor: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, deps.channel_weights(module_name, attr, tensor))  # checked by _ranked_dimension

    def _ranked_dimension(self, deps: DependencyGraph, module_name: str, param_name: str,
                          param: torch.Tensor) -> str:
        for name, attr in deps.members:
            if name == module_name and deps.role(name, attr) == self.role:
                module = deps.module(name)
                if trained_parameter(module, "weight") is param and deps.channel_weights(name, attr, param) is not None:
                    return attr
        what = "filters" if self.role == "out" else "input channels"
        raise ArgumentError(f"{self.name}: group_dependency 'Graph' ranks the {what} of layer weights; "
                            f"'{param_name}' is not the weight of a layer that has them in the model's graph")

    @staticmethod
    def _masks(model: torch.nn.Module, deps: DependencyGraph, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        names = {normalize_module_name(name): name for name, _ in named_scheduled_parameters(model)}
        masks: dict[str, torch.Tensor] = {}
        for (module_name, attr), kept in deps.kept_positions(keep).items():
            for tensor_name, mask in _parameter_masks(deps, module_name, attr, kept).items():
                name = names[normalize_module_name(f"{module_name}.{tensor_name}")]
                masks[name] = masks[name] * mask if name in masks else mask
        return masks

    def set_companion_masks(self, masks: dict[str, torch.Tensor], targeted: set[str], zeros_mask_dict: MaskDict,
                            model: torch.nn.Module, template: Any) -> None:
        """Sets the masks of the non-targeted parameters (BatchNorm weights and biases, coupled layers...)
        with the masking mode of ``template`` (a targeted weight's masker), applying hard masks at once, as
        the pruning policy does for the targeted weights. Companions of an earlier step that are no longer
        pruned get all-ones masks."""
        params = dict(named_scheduled_parameters(model))
        companions = {name for name in masks if name not in targeted}
        for name in self.companions - companions:
            zeros_mask_dict[name].mask = torch.ones_like(params[name], dtype=torch.bool)
        for name in companions:
            masker = zeros_mask_dict[name]
            masker.mask_on_forward_only = template.mask_on_forward_only
            masker.use_double_copies = template.use_double_copies
            masker.mask = masks[name].to(device=params[name].device, dtype=torch.bool)
            if not masker.is_soft:
                masker.mask_tensor(params[name])
        self.companions = companions
