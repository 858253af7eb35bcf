"""Does a checkpoint fit a model? The checks ``load_checkpoint`` runs before it changes anything.

A checkpoint fits when, after its recorded structural changes (thinning, quantization) are replayed,
the model has exactly the checkpoint's entries with the same shapes, and every mask names a parameter
of that shape. The replay is tried on a copy of the model (and optimizer), so a refused load leaves the
caller's objects untouched.
"""
import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import torch

from ..errors import CheckpointError, UserError, first_few, summarize_names
from ..registry import MODEL_TRANSFORMS
from ..utils import model_is_parallel, normalize_module_name

msglogger = logging.getLogger(__name__)

__all__ = ["StateFit", "state_fit", "mask_fit", "replay_model_transforms", "transformed_copy", "architecture_name"]


@dataclass
class StateFit:
    """How a checkpoint's entries match a model's (names without DataParallel's ``module.``).

    Attributes:
        missing: model entries the checkpoint lacks.
        unexpected: checkpoint entries the model lacks.
        reshaped: ``(name, checkpoint shape, model shape)`` of the entries whose shapes differ.
    """
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.reshaped)

    @property
    def left_initial(self) -> list[str]:
        """The model entries a partial load leaves at their initial values."""
        return self.missing + [name for name, _, _ in self.reshaped]

    @property
    def skipped(self) -> set[str]:
        """The checkpoint entries a partial load does not use."""
        return set(self.unexpected) | {name for name, _, _ in self.reshaped}

    def describe(self, what: tuple[str, str] = ("entry", "entries")) -> str:
        """``lacks 2 of the model's entries ('a', 'b'); has 1 entry the model lacks ('c'); ...``

        Args:
            what: the singular and plural of what is compared.
        """
        def count(names: list[Any]) -> str:
            return f"{len(names)} {what[0] if len(names) == 1 else what[1]}"

        parts = []
        if self.missing:
            parts.append(f"lacks {len(self.missing)} of the model's {what[1]} ({summarize_names(self.missing)})")
        if self.unexpected:
            parts.append(f"has {count(self.unexpected)} the model lacks ({summarize_names(self.unexpected)})")
        if self.reshaped:
            shown = first_few([f"'{name}': {_shape(saved)} in the checkpoint, {_shape(own)} in the model"
                               for name, saved, own in self.reshaped], first=3)
            parts.append(f"has {count(self.reshaped)} of another shape [{shown}]")
        return "; ".join(parts)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in shape) or "scalar"


def state_fit(model_entries: Mapping[str, torch.Tensor], checkpoint_entries: Mapping[str, Optional[torch.Tensor]],
              ) -> StateFit:
    """Compares the model's entries (e.g. ``model.state_dict()``) with a checkpoint's by name and shape.

    ``None`` checkpoint values (masks that were never set) are ignored; ``module.`` prefixes are ignored
    on both sides.
    """
    own = {normalize_module_name(name): tensor for name, tensor in model_entries.items()}
    saved = {normalize_module_name(name): tensor for name, tensor in checkpoint_entries.items() if tensor is not None}
    fit = StateFit(missing=[name for name in own if name not in saved],
                   unexpected=[name for name in saved if name not in own])
    fit.reshaped = [(name, tuple(tensor.shape), tuple(own[name].shape)) for name, tensor in saved.items()
                    if name in own and tuple(tensor.shape) != tuple(own[name].shape)]
    return fit


def mask_fit(model: torch.nn.Module, masks: Mapping[str, Optional[torch.Tensor]]) -> StateFit:
    """Masks that name no parameter of ``model`` (``unexpected``) or have another shape (``reshaped``);
    parameters without a mask are not ``missing``."""
    fit = state_fit(dict(model.named_parameters()), masks)
    fit.missing = []
    return fit


def architecture_name(model: torch.nn.Module, arch: Optional[str]) -> str:
    """``'resnet34'`` when the caller named the architecture, else the model's class (``ResNet``)."""
    if arch:
        return f"'{arch}'"
    inner = model.module if model_is_parallel(model) else model
    return f"the given {type(inner).__name__}"


def replay_model_transforms(model: torch.nn.Module, transforms: list[dict[str, Any]],
                            optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Replays recorded structural changes on ``model`` in the order they happened.

    The optimizer (when given) receives the parameters a transform adds (e.g. PACT clip values) before
    its saved state is loaded.
    """
    for record in transforms:
        MODEL_TRANSFORMS.get(record["kind"])(model, record, optimizer=optimizer)


def transformed_copy(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                     transforms: list[dict[str, Any]], chkpt_file: Union[str, os.PathLike[str]]
                     ) -> tuple[torch.nn.Module, Optional[torch.optim.Optimizer]]:
    """``(model, optimizer)`` as they will be once ``transforms`` are replayed: the originals when there is
    nothing to replay, else copies (the originals stay untouched).

    Raises:
        CheckpointError: a transform nothing is registered to replay, or one that does not fit the model.
    """
    unknown = [record.get("kind") for record in transforms if record.get("kind") not in MODEL_TRANSFORMS]
    if unknown:
        raise CheckpointError(f"'{chkpt_file}' records a '{unknown[0]}' model transform, but nothing is registered "
                              f"to replay it (known: {sorted(MODEL_TRANSFORMS)}); import the module that provides "
                              f"it (e.g. distiller.thinning) before loading")
    if not transforms:
        return model, optimizer
    probe_model, probe_optimizer = copy.deepcopy((model, optimizer))
    try:
        replay_model_transforms(probe_model, transforms, probe_optimizer)
    except (UserError, KeyError) as err:  # KeyError: a recorded class that is not registered (not imported)
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise CheckpointError(f"the structural changes recorded in '{chkpt_file}' "
                              f"({', '.join(r['kind'] for r in transforms)}) do not apply to this model: {reason}"
                              ) from err
    return probe_model, probe_optimizer
