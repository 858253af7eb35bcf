"""Importance criteria of structured pruning: callables that score the structures of a weight (higher = keep).

A ranked structure pruner (:class:`~distiller.pruning.RankedStructureParameterPruner` and its AGP form
:class:`~distiller.pruning.StructuredAGP`) takes its criterion as an ``importance`` argument: an
:class:`Importance` instance, a plain function ``fn(structures) -> scores``, or from YAML the name it is
registered under. Each call scores the
:class:`Structures` of one weight; criteria that need the model (activation statistics) get it through
:meth:`Importance.prepare` first.

Registered criteria (``importance:`` in YAML):

* ``'L1'``, ``'L2'``: Lp norm of each structure's weights (Li et al. 2017, "Pruning Filters for Efficient
  ConvNets", arXiv:1608.08710).
* ``'Taylor'``: first-order Taylor term ``sum |w * dL/dw|`` (Molchanov et al. 2016, "Pruning Convolutional
  Neural Networks for Resource Efficient Inference", arXiv:1611.06440).
* ``'APoZ'``: 1 - Average Percentage of Zeros of the rectified outputs (Hu et al. 2016, "Network Trimming",
  arXiv:1607.03250); ``'MeanActivation'``: mean rectified output (Molchanov et al. 2016).
* ``'Random'``: uniform scores, a fresh draw per call (Mittal et al. 2018, "Recovering from Random Pruning");
  ``'Bernoulli'``: each structure dropped independently with the target probability.

Add a criterion by subclassing :class:`Importance` and registering it::

    @register_importance("WeightVariance")
    class WeightVariance(Importance):
        def __call__(self, structures):
            return structures.rows().var(dim=1)
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import Callable, Optional, Union

import torch

from ..errors import ArgumentError, suggest
from ..norms import num_structures_to_prune, ranked_structure_mask
from .activation_stats import ActivationStatsCollector

__all__ = ["owning_module_name", "Structures", "Importance", "FunctionImportance", "LpImportance",
           "TaylorImportance", "RandomImportance", "BernoulliImportance", "ActivationImportance", "IMPORTANCES",
           "register_importance", "resolve_importance"]


def owning_module_name(param_name: str) -> str:
    """``'layer1.0.conv1.weight'`` -> ``'layer1.0.conv1'``."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


@dataclasses.dataclass(frozen=True)
class Structures:
    """The structures of one weight that a pruner ranks.

    Attributes:
        param: the parameter.
        param_name: its name in the model.
        module_name: the name of the module that owns it.
        group_type: the (canonical) structure type, e.g. ``'Filters'``.
        view: ``fn(tensor shaped like param) -> [structures, elements]``: the rows of a tensor per structure.
    """
    param: torch.Tensor
    param_name: str
    module_name: str
    group_type: str
    view: Callable[[torch.Tensor], torch.Tensor]

    def rows(self, tensor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``tensor`` (default: the parameter's values) as one row per structure."""
        return self.view(self.param.detach() if tensor is None else tensor)

    @property
    def count(self) -> int:
        """The number of structures."""
        return self.rows().shape[0]


class Importance(abc.ABC):
    """Base of the importance criteria: scores structures (higher = more important, kept longer)."""

    @abc.abstractmethod
    def __call__(self, structures: Structures) -> torch.Tensor:
        """Returns a 1D tensor with one score per structure."""

    def check_group_type(self, group_type: str) -> Optional[str]:
        """Why the criterion cannot rank structures of ``group_type`` (a sentence), or None."""
        return None

    def prepare(self, model: torch.nn.Module, module_names: list[str]) -> None:
        """Called before scoring with the model and the modules whose weights will be scored (e.g. to install
        hooks); the default does nothing."""

    def keep_mask(self, scores: torch.Tensor, fraction: float, group_size: int = 1,
                  rounding_fn: Callable = math.floor, noise: float = 0.0) -> torch.Tensor:
        """Bool keep-mask pruning ``fraction`` of the structures: by default the least important ones
        (:func:`~distiller.norms.ranked_structure_mask`)."""
        return ranked_structure_mask(scores, fraction, group_size, rounding_fn, noise)

    def prunes(self, count: int, fraction: float, group_size: int = 1, rounding_fn: Callable = math.floor) -> bool:
        """Whether :meth:`keep_mask` prunes anything among ``count`` structures for ``fraction`` (when it
        does not, scores are not computed, so no gradients or statistics are needed yet)."""
        return num_structures_to_prune(count, fraction, group_size, rounding_fn) > 0

    def state_dict(self) -> dict:
        """Plain-data state a resumed run needs (default: none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionImportance(Importance):
    """An :class:`Importance` made of a plain function ``fn(structures) -> scores``."""

    def __init__(self, function: Callable[[Structures], torch.Tensor]) -> None:
        self.function = function

    def __call__(self, structures: Structures) -> torch.Tensor:
        return self.function(structures)

    def __repr__(self) -> str:
        return f"FunctionImportance({getattr(self.function, '__qualname__', self.function)!r})"


class LpImportance(Importance):
    """Lp norm of each structure's weights; for whole tensors (``'4D'``) divided by the element count, so that
    layers of different sizes compare."""

    def __init__(self, p: float = 1) -> None:
        self.p = p

    def __call__(self, structures: Structures) -> torch.Tensor:
        rows = structures.rows()
        norms = torch.linalg.vector_norm(rows, ord=self.p, dim=1)
        return norms / rows.shape[1] if structures.group_type == "4D" else norms

    def __repr__(self) -> str:
        return f"LpImportance(p={self.p})"


class TaylorImportance(Importance):
    """``sum |w * dL/dw|`` per structure, from the gradient the last backward pass left in ``param.grad``."""

    def __call__(self, structures: Structures) -> torch.Tensor:
        grad = structures.param.grad
        if grad is None:
            raise ArgumentError(f"'{structures.param_name}': gradient ranking needs param.grad: schedule the "
                                f"pruner after a backward pass (e.g. a policy starting at epoch >= 1 or mini-batch "
                                f"pruning), not before training")
        return structures.rows(structures.param.detach() * grad.detach()).abs().sum(dim=1)


class RandomImportance(Importance):
    """Uniform random scores, a fresh draw at every call."""

    def __call__(self, structures: Structures) -> torch.Tensor:
        return torch.rand(structures.count, device=structures.param.device)


class BernoulliImportance(RandomImportance):
    """Drops each structure independently with probability ``fraction`` (at least one survives); the number
    dropped varies, so ``group_size`` and ``rounding_fn`` do not apply."""

    def keep_mask(self, scores: torch.Tensor, fraction: float, group_size: int = 1,
                  rounding_fn: Callable = math.floor, noise: float = 0.0) -> torch.Tensor:
        keep = scores >= fraction
        keep[scores.argmax()] = True
        return keep

    def prunes(self, count: int, fraction: float, group_size: int = 1, rounding_fn: Callable = math.floor) -> bool:
        return True   # draws at every step (needs no data), as Distiller does


class ActivationImportance(Importance):
    """Per-filter statistics of the rectified outputs, collected by forward hooks
    (:class:`~distiller.pruning.ActivationStatsCollector`) since the previous ranking.

    Args:
        statistic: ``'apoz'`` (score: 1 - APoZ) or ``'mean'`` (score: the mean activation).
    """

    def __init__(self, statistic: str) -> None:
        self.statistic = statistic
        self.collector: Optional[ActivationStatsCollector] = None
        self._saved: dict = {}

    def check_group_type(self, group_type: str) -> Optional[str]:
        if group_type == "Filters":
            return None
        return f"activation ranking applies to output filters: use group_type 'Filters' (or '3D'), not {group_type!r}"

    def prepare(self, model: torch.nn.Module, module_names: list[str]) -> None:
        if self.collector is None:
            self.collector = ActivationStatsCollector(model, module_names, self.statistic)
            self.collector.load_state_dict(self._saved)

    def __call__(self, structures: Structures) -> torch.Tensor:
        if self.collector is None:
            raise RuntimeError("ActivationImportance.prepare(model, module_names) must run before scoring")
        stat = self.collector.statistic_of(structures.module_name)
        if stat.numel() != structures.count:
            raise ArgumentError(f"'{structures.param_name}' has {structures.count} filters but its module's output "
                                f"has {stat.numel()} channels; activation ranking needs the weight's own module")
        stat = stat.to(structures.param.device)
        return 1.0 - stat if self.statistic == "apoz" else stat

    def state_dict(self) -> dict:
        return {"activation_stats": self.collector.state_dict() if self.collector else dict(self._saved)}

    def load_state_dict(self, state: dict) -> None:
        self._saved = dict(state.get("activation_stats", {}))
        if self.collector is not None:
            self.collector.load_state_dict(self._saved)

    def __repr__(self) -> str:
        return f"ActivationImportance({self.statistic!r})"


#: name -> factory of a fresh criterion (``importance:`` values in YAML).
IMPORTANCES: dict[str, Callable[[], Importance]] = {
    "L1": lambda: LpImportance(1), "L2": lambda: LpImportance(2), "Taylor": TaylorImportance,
    "Random": RandomImportance, "Bernoulli": BernoulliImportance,
    "APoZ": lambda: ActivationImportance("apoz"), "MeanActivation": lambda: ActivationImportance("mean")}


def register_importance(name: str) -> Callable[[type], type]:
    """Class decorator registering an :class:`Importance` subclass (built without arguments) as ``name``.

    Raises:
        ArgumentError: when ``name`` is taken.
    """
    def add(importance_class: type) -> type:
        if name in IMPORTANCES:
            raise ArgumentError(f"importance '{name}' is already registered")
        IMPORTANCES[name] = importance_class
        return importance_class
    return add


def resolve_importance(importance: Union[str, Importance, Callable[..., torch.Tensor], None]) -> Importance:
    """An :class:`Importance` from an instance, a registered name or a function of :class:`Structures`.

    Raises:
        ArgumentError: for an unknown name or a value that is none of these.
    """
    if isinstance(importance, Importance):
        return importance
    if isinstance(importance, str) and importance in IMPORTANCES:
        return IMPORTANCES[importance]()
    if callable(importance) and not isinstance(importance, (str, type)):
        return FunctionImportance(importance)
    hint = suggest(importance, IMPORTANCES) if isinstance(importance, str) else None
    raise ArgumentError(f"importance {importance!r} is neither an Importance, a function of Structures nor one "
                        f"of {sorted(IMPORTANCES)}" + (f" (did you mean {hint}?)" if hint else ""))
