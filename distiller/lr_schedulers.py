"""Learning-rate schedulers usable from a schedule's ``lr_schedulers:`` section.

Every ``torch.optim.lr_scheduler`` class whose arguments can be written in YAML is registered under
its own name; ``LambdaLR``/``MultiplicativeLR`` (need a Python callable) and ``SequentialLR``/
``ChainedScheduler`` (need scheduler objects) cannot be, and are left to Python users. Two schedulers
from Distiller's schedules are added: :class:`MultiStepMultiGammaLR` and a :class:`PolynomialLR` that
also accepts Distiller's ``T_max`` argument.
"""
import math
from collections.abc import Sequence
from typing import Optional

from torch import Tensor
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_lr

from .errors import ArgumentError
from .registry import LR_SCHEDULERS, register_lr_scheduler
from .spec import NonNegativeInt, PositiveInt, Real, validated

__all__ = ["MultiStepMultiGammaLR", "PolynomialLR"]

_NOT_YAML_EXPRESSIBLE = {"LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler", "LRScheduler"}

for _name in dir(torch_lr):
    _cls = getattr(torch_lr, _name)
    if (isinstance(_cls, type) and issubclass(_cls, torch_lr.LRScheduler) and not _name.startswith("_")
            and _name not in _NOT_YAML_EXPRESSIBLE and _name != "PolynomialLR"):
        LR_SCHEDULERS.register(_cls, name=_name)


@register_lr_scheduler
class MultiStepMultiGammaLR(torch_lr.LRScheduler):
    """Multiplies the learning rate by ``gammas[i]`` once epoch ``milestones[i]`` is reached (cumulative).

    YAML::

        training_lr:
          class: MultiStepMultiGammaLR
          milestones: [30, 60, 80]
          gammas: [0.1, 0.1, 0.2]
    """

    @validated
    def __init__(self, optimizer: Optimizer, milestones: Sequence[NonNegativeInt], gammas: Sequence[Real],
                 last_epoch: int = -1) -> None:
        if len(milestones) != len(gammas):
            raise ArgumentError(f"MultiStepMultiGammaLR: milestones ({len(milestones)}) and gammas ({len(gammas)}) "
                                "must have the same length", argument="gammas")
        if list(milestones) != sorted(milestones):
            raise ArgumentError(f"MultiStepMultiGammaLR: milestones must be increasing, got {list(milestones)}",
                                argument="milestones")
        self.milestones = list(milestones)
        self.gammas = list(gammas)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | Tensor]:
        factor = math.prod(g for m, g in zip(self.milestones, self.gammas) if self.last_epoch >= m)
        return [base_lr * factor for base_lr in self.base_lrs]


@register_lr_scheduler
class PolynomialLR(torch_lr.PolynomialLR):
    """``lr = base_lr * (1 - epoch / total_iters) ** power``; accepts Distiller's ``T_max`` for ``total_iters``.

    YAML::

        poly:
          class: PolynomialLR
          T_max: 30
          power: 2
    """

    @validated
    def __init__(self, optimizer: Optimizer, total_iters: Optional[PositiveInt] = None, power: Real = 1.0,
                 last_epoch: int = -1, T_max: Optional[PositiveInt] = None) -> None:
        iters = total_iters if T_max is None else T_max
        if iters is None or (total_iters is not None and T_max is not None):
            raise ArgumentError("PolynomialLR needs exactly one of total_iters or T_max (Distiller's name)",
                                argument="total_iters")
        super().__init__(optimizer, total_iters=iters, power=power, last_epoch=last_epoch)

