"""Distiller's own learning-rate schedulers: typed arguments checked by the spec layer, the same errors from
Python and from a schedule."""
import pytest
import torch

import distiller
from distiller.errors import ArgumentError
from distiller.lr_schedulers import MultiStepMultiGammaLR, PolynomialLR
from distiller.testing import TinyCNN


def _optimizer(model=None):
    return torch.optim.SGD((model or TinyCNN()).parameters(), lr=0.1)


def _schedule(class_name, **args):
    return {"version": 1, "lr_schedulers": {"lr": dict({"class": class_name}, **args)},
            "policies": [{"lr_scheduler": {"instance_name": "lr"}, "starting_epoch": 0, "ending_epoch": 4,
                          "frequency": 1}]}


@pytest.mark.parametrize("cls, args, argument, expected", [
    (MultiStepMultiGammaLR, {"milestones": [1, 2], "gammas": [0.1, "high"]}, "gammas", "expects a number, got 'high'"),
    (MultiStepMultiGammaLR, {"milestones": [1.5], "gammas": [0.1]}, "milestones", "expects an integer >= 0, got 1.5"),
    (MultiStepMultiGammaLR, {"milestones": [3, 1], "gammas": [0.1, 0.1]}, "milestones", "must be increasing"),
    (MultiStepMultiGammaLR, {"milestones": [1, 2], "gammas": [0.1]}, "gammas", "must have the same length"),
    (PolynomialLR, {"T_max": 0}, "T_max", "an integer > 0 or None, got 0"),
    (PolynomialLR, {"total_iters": True}, "total_iters", "an integer > 0 or None, got True"),
    (PolynomialLR, {"total_iters": 4, "T_max": 4}, "total_iters", "exactly one of total_iters or T_max"),
])
def test_python_and_schedule_raise_the_same_error(cls, args, argument, expected):
    with pytest.raises(ArgumentError) as info:
        cls(_optimizer(), **args)
    assert info.value.argument == argument and expected in str(info.value)
    if "got" in expected:
        assert str(info.value).startswith(f"{cls.__name__}: argument '{argument}")
    model = TinyCNN()
    with pytest.raises(distiller.ScheduleError) as from_yaml:
        distiller.config.dict_config(model, _optimizer(model), _schedule(cls.__name__, **args))
    assert str(info.value) in str(from_yaml.value)
    assert from_yaml.value.path.startswith("lr_schedulers.lr")


def test_yaml_exponent_strings_are_numbers():
    scheduler = MultiStepMultiGammaLR(_optimizer(), milestones=[1], gammas=["5e-1"])
    assert scheduler.gammas == [0.5]
    assert PolynomialLR(_optimizer(), T_max=4, power="2e0").power == 2.0


def test_distiller_t_max_is_total_iters():
    optimizer = _optimizer()
    scheduler = PolynomialLR(optimizer, T_max=4, power=2)
    optimizer.step()
    scheduler.step()
    assert scheduler.total_iters == 4
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 1 / 4) ** 2)
