"""Learning-rate schedulers usable from a schedule's ``lr_schedulers:`` section.

Every ``torch.optim.lr_scheduler`` class whose arguments can be written in YAML is registered under
its own name; ``LambdaLR``/``MultiplicativeLR`` (need a Python callable) and ``SequentialLR``/
``ChainedScheduler`` (need scheduler objects) cannot be, and are left to Python users. Two schedulers
from Distiller's schedules are added: :class:`MultiStepMultiGammaLR` and a :class:`PolynomialLR` that
also accepts Distiller's ``T_max`` argument.
"""
import math

from torch.optim import lr_scheduler as torch_lr

from .errors import ArgumentError
from .registry import LR_SCHEDULERS, register_lr_scheduler

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

        lr_schedulers:
          training_lr:
            class: MultiStepMultiGammaLR
            milestones: [30, 60, 80]
            gammas: [0.1, 0.1, 0.2]
    """

    def __init__(self, optimizer, milestones, gammas, last_epoch=-1):
        if len(milestones) != len(gammas):
            raise ArgumentError(f"milestones ({len(milestones)}) and gammas ({len(gammas)}) must have the same length")
        if list(milestones) != sorted(milestones):
            raise ArgumentError(f"milestones must be increasing, got {list(milestones)}")
        self.milestones = list(milestones)
        self.gammas = [float(g) for g in gammas]
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factor = math.prod(g for m, g in zip(self.milestones, self.gammas) if self.last_epoch >= m)
        return [base_lr * factor for base_lr in self.base_lrs]


@register_lr_scheduler
class PolynomialLR(torch_lr.PolynomialLR):
    """``lr = base_lr * (1 - epoch / total_iters) ** power``; accepts Distiller's ``T_max`` for ``total_iters``.

    YAML::

        lr_schedulers:
          poly:
            class: PolynomialLR
            T_max: 30
            power: 2
    """

    def __init__(self, optimizer, total_iters=None, power=1.0, last_epoch=-1, T_max=None):
        if (total_iters is None) == (T_max is None):
            raise ArgumentError("PolynomialLR needs exactly one of total_iters or T_max (Distiller's name)")
        super().__init__(optimizer, total_iters=total_iters if T_max is None else T_max, power=power,
                         last_epoch=last_epoch)

