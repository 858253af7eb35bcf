"""The Python front end of fusion compression: chain compressors on one model (NNI's ``from_compressor``
style), run them together, and get the equivalent YAML schedule.

Each compressor contributes instances and policies to one schedule dictionary, which
:func:`distiller.config.dict_config` builds exactly as it builds a YAML file: one engine, two front ends, the
same validation and the same checkpoints. Example::

    pruner = Pruner(model, [{"op_types": ["Conv2d"], "sparsity": 0.7}], ending_epoch=3)
    quantizer = Quantizer.from_compressor(pruner, [{"op_types": ["Conv2d", "Linear"], "quant_bits": 8}],
                                          starting_epoch=1)
    kd = Distiller.from_compressor(quantizer, teacher={"arch": "resnet56_cifar", "dataset": "digits",
                                                      "checkpoint": "teacher.pth.tar"}, temperature=4.0)
    kd.compress(train_loader, epochs=5, optimizer=optimizer)
    masks = pruner.get_masks()
    print(kd.to_yaml(epochs=5))
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Optional

import torch
import yaml
from torch import nn

from ..errors import ArgumentError
from ..scheduler import CompressionScheduler
from .selection import check_entry_keys, select_modules

__all__ = ["Compressor", "Pruner", "Quantizer", "Distiller"]

#: config_list granularity -> (the pruner class, its group_type) for structured pruning.
_STRUCTURED = {"filter": "Filters", "channel": "Channels"}


class _Run:
    """What the chain shares: the scheduler of its last :meth:`Compressor.compress`."""

    def __init__(self) -> None:
        self.scheduler: Optional[CompressionScheduler] = None


class Compressor:
    """A link of a fusion chain: one or more schedule instances of one section, with their policies.

    Subclasses fill ``self.instances`` (instance name -> YAML definition) and ``self.epochs`` (starting,
    ending, frequency of their policies). ``from_compressor`` appends a compressor to a chain; the chain's
    policies run in chain order, which is the order of its YAML ``policies``.
    """

    section: ClassVar[str]
    policy_key: ClassVar[str]
    model: nn.Module

    def __init__(self, model: nn.Module, previous: Optional[Compressor], starting_epoch: int,
                 ending_epoch: Optional[int], frequency: int) -> None:
        if previous is not None and previous.model is not model:
            raise ArgumentError(f"{type(self).__name__}.from_compressor: the compressors of a chain compress one model")
        if previous is not None and any(type(link) is type(self) for link in previous.chain()) and \
                self.section in ("quantizers", "distillers"):
            raise ArgumentError(f"the chain already has a {type(self).__name__}: one {self.section[:-1]} per run")
        self.model = model
        self.previous = previous
        self.epochs = (starting_epoch, ending_epoch, frequency)
        self.instances: dict[str, dict[str, Any]] = {}
        self._run: _Run = previous._run if previous is not None else _Run()
        self._prefix = f"{type(self).__name__.lower()}{len(previous.chain()) if previous is not None else 0}"

    @classmethod
    def from_compressor(cls, compressor: Compressor, *args: Any, **kwargs: Any) -> Compressor:
        """A compressor of this kind on ``compressor``'s model, running after it in the same schedule."""
        return cls(compressor.model, *args, previous=compressor, **kwargs)  # type: ignore[misc]

    def chain(self) -> list[Compressor]:
        """The compressors of the chain, first to last (this one last)."""
        return (self.previous.chain() if self.previous is not None else []) + [self]

    def _policies(self, epochs: Optional[int]) -> list[dict[str, Any]]:
        start, end, frequency = self.epochs
        if end is None:
            if epochs is None:
                raise ArgumentError(f"{type(self).__name__} runs until the end of training: pass epochs=N")
            end = epochs
        if not start < end:
            raise ArgumentError(f"{type(self).__name__}: starting_epoch {start} is not before ending_epoch {end}")
        return [{self.policy_key: {"instance_name": name}, "starting_epoch": start, "ending_epoch": end,
                 "frequency": frequency} for name in self.instances]

    def schedule(self, epochs: Optional[int] = None) -> dict[str, Any]:
        """The chain's schedule as a dictionary (what a YAML schedule file parses to).

        Args:
            epochs: the run's length, for compressors whose ``ending_epoch`` is None (until the end).
        """
        schedule: dict[str, Any] = {"version": 1}
        policies: list[dict[str, Any]] = []
        for link in self.chain():
            schedule.setdefault(link.section, {}).update(link.instances)
            policies += link._policies(epochs)
        schedule["policies"] = policies
        return schedule

    def to_yaml(self, epochs: Optional[int] = None) -> str:
        """The chain's schedule as YAML text: ``compress_classifier.py --compress`` runs the same experiment."""
        return yaml.safe_dump(self.schedule(epochs), sort_keys=False)

    def compress(self, train_loader: Iterable[Any], epochs: int, optimizer: torch.optim.Optimizer,
                 criterion: Optional[nn.Module] = None) -> CompressionScheduler:
        """Builds the chain's schedule on the model and trains ``epochs`` epochs with it.

        Args:
            train_loader: ``(inputs, targets)`` batches.
            optimizer: the optimizer of the model's parameters.
            criterion: the training loss (default: cross-entropy).
        Returns:
            the :class:`~distiller.CompressionScheduler` (its masks, policy states, checkpointable).
        """
        from ..apputils.classifier_loop import train_one_epoch
        from ..config import dict_config

        scheduler = dict_config(self.model, optimizer, self.schedule(epochs))
        self._run.scheduler = scheduler
        criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        for epoch in range(epochs):
            scheduler.on_epoch_begin(epoch, optimizer)
            train_one_epoch(self.model, criterion, optimizer, train_loader, epoch, scheduler)
            scheduler.on_epoch_end(epoch, optimizer)
        return scheduler

    @property
    def scheduler(self) -> CompressionScheduler:
        """The scheduler of the chain's last :meth:`compress`."""
        if self._run.scheduler is None:
            raise ArgumentError(f"{type(self).__name__}: run compress(...) first")
        return self._run.scheduler


def _entries(config_list: Sequence[Mapping[str, Any]], what: str) -> list[Mapping[str, Any]]:
    if isinstance(config_list, Mapping) or not isinstance(config_list, Sequence) or not config_list:
        raise ArgumentError(f"{what} config_list must be a non-empty list of dicts, got {config_list!r}")
    return list(config_list)


class Pruner(Compressor):
    """Prunes the modules each ``config_list`` entry selects to its ``sparsity`` by the end of the pruner's
    epochs, gradually (AGP, Zhu & Gupta 2017).

    Entry keys: ``op_types``/``op_names``/``exclude_op_names`` (see :mod:`distiller.compose.selection`),
    ``sparsity`` (final, required), ``initial_sparsity`` (default 0.05), ``granularity`` (``'element'``,
    default: :class:`~distiller.pruning.AutomatedGradualPruner`; ``'filter'``/``'channel'``:
    :class:`~distiller.pruning.L1RankedStructureParameterPruner_AGP`) and, for structures,
    ``group_dependency`` (e.g. ``'Graph'``: channels that thinning must remove together are pruned together).
    """

    section, policy_key = "pruners", "pruner"
    _SETTINGS = ("sparsity", "initial_sparsity", "granularity", "group_dependency")

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], starting_epoch: int = 0,
                 ending_epoch: Optional[int] = None, frequency: int = 1, *,
                 previous: Optional[Compressor] = None) -> None:
        super().__init__(model, previous, starting_epoch, ending_epoch, frequency)
        for index, entry in enumerate(_entries(config_list, "Pruner")):
            check_entry_keys(entry, index, self._SETTINGS, "Pruner")
            if "sparsity" not in entry:
                raise ArgumentError(f"Pruner config_list[{index}] needs 'sparsity' (the final fraction pruned)")
            weights = [f"{name}.weight" for name in select_modules(model, entry, index, "Pruner")]
            granularity = entry.get("granularity", "element")
            instance: dict[str, Any] = {"initial_sparsity": entry.get("initial_sparsity", 0.05),
                                        "final_sparsity": entry["sparsity"], "weights": weights}
            if granularity == "element":
                instance = {"class": "AutomatedGradualPruner", **instance}
            elif granularity in _STRUCTURED:
                instance = {"class": "L1RankedStructureParameterPruner_AGP", **instance,
                            "group_type": _STRUCTURED[granularity]}
                if "group_dependency" in entry:
                    instance["group_dependency"] = entry["group_dependency"]
            else:
                raise ArgumentError(f"Pruner config_list[{index}].granularity: '{granularity}' is not one of "
                                    "element, filter, channel")
            self.instances[f"{self._prefix}_{index}"] = instance
        self._weights = [w for instance in self.instances.values() for w in instance["weights"]]

    def get_masks(self) -> dict[str, torch.Tensor]:
        """The masks of this pruner's weights after :meth:`compress`: weight name -> 0/1 tensor."""
        maskers = self.scheduler.zeros_mask_dict
        masks = {name: maskers[name].mask for name in self._weights}
        return {name: mask for name, mask in masks.items() if mask is not None}


def _bits(value: Any, index: int) -> dict[str, Optional[int]]:
    """NNI's ``quant_bits``: one width for weights and outputs, or ``{'weight': w, 'output': a}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"bits_weights": value, "bits_activations": value}
    if isinstance(value, Mapping) and value and set(value) <= {"weight", "output"}:
        return {"bits_weights": value.get("weight"), "bits_activations": value.get("output")}
    raise ArgumentError(f"Quantizer config_list[{index}].quant_bits must be an int or a dict with 'weight' and/or "
                        f"'output', got {value!r}")


class Quantizer(Compressor):
    """Quantization-aware training of the modules each ``config_list`` entry selects, with its ``quant_bits``
    (an int, or ``{'weight': 4, 'output': 8}``); other modules stay in float. Entries may select modules
    without weights, e.g. ``{'op_types': ['ReLU'], 'quant_bits': {'output': 8}}``: range-linear QAT quantizes
    activations at the ReLU modules.

    Args:
        quantizer_class: the registered QAT quantizer (default
            :class:`~distiller.quantization.QuantAwareTrainRangeLinearQuantizer`).
        **quantizer_args: further arguments of that class (``mode``, ``per_channel_wts``, ``ema_decay``...).
    """

    section, policy_key = "quantizers", "quantizer"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], starting_epoch: int = 0,
                 ending_epoch: Optional[int] = None, frequency: int = 1, *, previous: Optional[Compressor] = None,
                 quantizer_class: str = "QuantAwareTrainRangeLinearQuantizer", **quantizer_args: Any) -> None:
        super().__init__(model, previous, starting_epoch, ending_epoch, frequency)
        overrides: dict[str, dict[str, Optional[int]]] = {}
        for index, entry in enumerate(_entries(config_list, "Quantizer")):
            check_entry_keys(entry, index, ("quant_bits",), "Quantizer")
            if "quant_bits" not in entry:
                raise ArgumentError(f"Quantizer config_list[{index}] needs 'quant_bits'")
            bits = _bits(entry["quant_bits"], index)
            for name in select_modules(model, entry, index, "Quantizer", weighted=False):
                overrides[re.escape(name)] = dict(bits)  # one mapping per module: plain YAML, no anchors
        self.instances[self._prefix] = {"class": quantizer_class, "bits_activations": None, "bits_weights": None,
                                        "bits_bias": None, **quantizer_args, "overrides": overrides}


class Distiller(Compressor):
    """Knowledge distillation (Hinton et al. 2015) from a teacher given as ``{'arch', 'dataset', 'checkpoint'}``
    (or ``'pretrained': True``), with FitNets ``hints`` if given (see
    :class:`~distiller.knowledge_distillation.KnowledgeDistillation`)."""

    section, policy_key = "distillers", "distiller"

    def __init__(self, model: nn.Module, teacher: Mapping[str, Any], temperature: float = 1.0,
                 loss_weights: Optional[Mapping[str, float]] = None, hints: Sequence[Mapping[str, Any]] = (),
                 starting_epoch: int = 0, ending_epoch: Optional[int] = None, frequency: int = 1, *,
                 previous: Optional[Compressor] = None) -> None:
        super().__init__(model, previous, starting_epoch, ending_epoch, frequency)
        instance: dict[str, Any] = {"class": "KnowledgeDistillation", "teacher": dict(teacher),
                                    "temperature": temperature}
        if loss_weights is not None:
            instance["loss_weights"] = dict(loss_weights)
        if hints:
            instance["hints"] = [dict(hint) for hint in hints]
        self.instances[self._prefix] = instance
