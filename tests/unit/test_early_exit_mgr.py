"""EarlyExitMgr (Distiller's manager of early exits)."""
import pytest
import torch
from torch import nn

from distiller import EarlyExitMgr
from distiller.errors import UnmatchedNameError


def test_exits_are_attached_collected_in_order_and_cleared():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    exit1, exit2 = nn.Linear(3, 2), nn.Linear(3, 2)
    mgr = EarlyExitMgr()
    mgr.attach_exits(model, [("3", exit2), ("1", exit1)])
    assert mgr.exit_points == ["3", "1"]
    x = torch.randn(5, 4)
    final = model(x)
    hidden1 = torch.relu(model[0](x))
    hidden2 = torch.relu(model[2](hidden1))
    outputs = mgr.get_exits_outputs(model)
    torch.testing.assert_close(outputs[0], exit2(hidden2))
    torch.testing.assert_close(outputs[1], exit1(hidden1))
    torch.testing.assert_close(final, model[4](hidden2))
    mgr.delete_exits_outputs(model)
    with pytest.raises(RuntimeError, match="the exit at '3' has no output"):
        mgr.get_exits_outputs(model)


def test_unknown_exit_points_attach_nothing():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    mgr = EarlyExitMgr()
    with pytest.raises(UnmatchedNameError, match="'2' matches no module"):
        mgr.attach_exits(model, [("1", nn.Linear(3, 2)), ("2", nn.Linear(3, 2))])
    assert isinstance(model[1], nn.ReLU) and mgr.exit_points == []


def test_a_model_without_the_exits_is_refused_naming_the_exit_point():
    mgr = EarlyExitMgr()
    mgr.attach_exits(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), [("1", nn.Linear(3, 2))])
    with pytest.raises(RuntimeError, match="'1' of this model is a ReLU, not an exit"):
        mgr.get_exits_outputs(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
