"""Typed records of a schedule, shared by :mod:`distiller.config`, :mod:`distiller.policy` and
:mod:`distiller.scheduler`: when a policy runs, what its ``args:`` may say, and the context each
callback receives. YAML and Python callers build the same records, so they get the same checks.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import torch

from .errors import ArgumentError
from .spec import Fraction, NonNegativeInt, PositiveInt, record

__all__ = ["PolicySchedule", "PruningPolicyArgs", "RegularizationPolicyArgs", "PolicyContext"]


@record
class PolicySchedule:
    """The epochs a policy runs in: ``range(starting_epoch, ending_epoch, frequency)``, or an explicit
    ``epochs`` list.

    Raises:
        ArgumentError: ``ending_epoch`` missing or not after ``starting_epoch``, an empty ``epochs`` list.
    """
    starting_epoch: NonNegativeInt = 0
    ending_epoch: Optional[int] = None
    frequency: PositiveInt = 1
    epochs: Optional[Sequence[NonNegativeInt]] = None

    def __post_init__(self) -> None:
        if self.epochs is not None:
            if not self.epochs:
                raise ArgumentError("'epochs' must list at least one epoch", argument="epochs")
            return
        if self.ending_epoch is None:
            raise ArgumentError("a policy needs 'ending_epoch' (or an 'epochs' list)", argument="ending_epoch")
        if self.ending_epoch <= self.starting_epoch:
            raise ArgumentError(f"ending_epoch ({self.ending_epoch}) must be greater than starting_epoch "
                                f"({self.starting_epoch})", argument="ending_epoch")

    def epoch_list(self) -> list[int]:
        """The epochs, ascending."""
        if self.epochs is not None:
            return sorted(set(self.epochs))
        assert self.ending_epoch is not None  # checked in __post_init__
        return list(range(self.starting_epoch, self.ending_epoch, self.frequency))

    def bounds(self) -> tuple[int, int, Optional[int]]:
        """``(starting_epoch, ending_epoch, frequency)`` as Distiller's policies read them (frequency None
        for an explicit list)."""
        if self.epochs is not None:
            epochs = self.epoch_list()
            return epochs[0], epochs[-1] + 1, None
        assert self.ending_epoch is not None
        return self.starting_epoch, self.ending_epoch, self.frequency


@record
class PruningPolicyArgs:
    """The ``args:`` of a pruner's policy entry.

    Attributes:
        levels: overrides the pruner's ``levels`` (parameter name/regex -> sparsity).
        keep_mask: at the policy's end turn soft masks into permanent ones.
        mini_batch_pruning_frequency: also prune every N mini-batches (0: only at epoch begin).
        mask_on_forward_only: soft pruning (mask for the forward pass only).
        mask_gradients: zero masked gradients through a hook.
        use_double_copies: loss on masked weights, update of unmasked weights. Costs a full copy of each such
            weight during every step (+1x their bytes); ``mask_on_forward_only`` alone keeps no copy.
        discard_masks_at_minibatch_end: drop the masks after each mini-batch.
        skip_first_minibatch: first mask after one optimizer step.
        fold_batchnorm: rank each weight as if the BatchNorm right after its layer were folded into it
            (scaled per output channel by ``gamma / sqrt(running_var + eps)``); the mask still applies to
            the weight itself. For magnitude criteria: a filter that BatchNorm scales down counts as small.
    """
    levels: Optional[dict[str, Fraction]] = None
    keep_mask: bool = False
    mini_batch_pruning_frequency: NonNegativeInt = 0
    mask_on_forward_only: bool = False
    mask_gradients: bool = False
    use_double_copies: bool = False
    discard_masks_at_minibatch_end: bool = False
    skip_first_minibatch: bool = False
    fold_batchnorm: bool = False


@record
class RegularizationPolicyArgs:
    """The ``args:`` of a regularizer's policy entry.

    Attributes:
        keep_mask: keep the thresholding mask permanently after the policy's last mini-batch.
    """
    keep_mask: bool = False


@dataclasses.dataclass(frozen=True)
class PolicyContext(Mapping[str, Any]):
    """What a policy callback knows: its schedule, the current epoch and the objects of the run.

    Also readable as the ``meta`` dict Distiller's policies received (``meta['current_epoch']``), so
    policies and pruners written for Distiller keep working.
    """
    starting_epoch: int
    ending_epoch: int
    frequency: Optional[int]
    current_epoch: float
    model: torch.nn.Module
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Any = None  # the CompressionScheduler (typed Any: the scheduler module imports this one)

    def __getitem__(self, key: str) -> Any:
        if key not in _CONTEXT_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_CONTEXT_KEYS)

    def __len__(self) -> int:
        return len(_CONTEXT_KEYS)

    def at_epoch(self, current_epoch: float) -> PolicyContext:
        """The same context at another (possibly fractional, mid-epoch) epoch."""
        return dataclasses.replace(self, current_epoch=current_epoch)


_CONTEXT_KEYS = tuple(field.name for field in dataclasses.fields(PolicyContext))
