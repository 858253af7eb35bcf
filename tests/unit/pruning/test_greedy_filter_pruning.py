"""Greedy filter pruning: the search (least top-1 per MAC saved), its stopping point, coupled groups, the
fine-tuning schedule, greedy.csv, the app flags and the errors."""
import argparse
import csv

import pytest
import torch
from torch import nn

from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.cli import ArgumentParser
from distiller.errors import ArgumentError
from distiller.graph import GraphCaptureError
from distiller.pruning.greedy_filter_pruning import (CSV_NAME, add_greedy_pruner_args, finetuning_epochs,
                                                     greedy_pruner)
from distiller.scheduler import CompressionScheduler
from distiller.summaries import model_macs
from distiller.testing import TinyCNN, TinyResidualNet
from distiller.thinning import ThinningError

X = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
#: TinyCNN's MACs on 8x8 inputs: conv1 8*64*27, conv2 16*64*72, fc 16*10
TINY_CNN_MACS = 13824 + 73728 + 160


def _batch():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(16, 3, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def _real_test_fn(model):
    inputs, target = _batch()
    model.eval()
    with torch.no_grad():
        output = model(inputs)
    top1 = 100.0 * (output.argmax(dim=1) == target).float().mean().item()
    return top1, 100.0, nn.functional.cross_entropy(output, target).item()


def _sgd_train_fn(calls):
    def train_fn(model, epochs):
        calls.append(epochs)
        inputs, target = _batch()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        model.train()
        for _ in range(epochs):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), target).backward()
            optimizer.step()
    return train_fn


def _tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN()


def _width_scores(penalties, top1=90.0, loss=1.0, on="top1"):
    """test_fn whose top-1 (or loss) depends only on how many filters each layer lost."""
    def test_fn(model):
        lost = sum(weight * (full - getattr(model, name).out_channels) for name, (full, weight) in penalties.items())
        return (top1 - lost, 100.0, loss) if on == "top1" else (top1, 100.0, loss + lost)
    return test_fn


def test_it_reaches_the_target_macs_and_stops_there():
    model = _tiny_cnn()
    model, steps = greedy_pruner(model, None, 0.6, 0.1, _real_test_fn, None, dummy_input=X)
    assert len(steps) > 2 and steps[-1].macs <= 0.6 * TINY_CNN_MACS < min(step.macs for step in steps[:-1])
    assert model_macs(model, X) == steps[-1].macs
    assert steps[-1].density == pytest.approx(steps[-1].macs / TINY_CNN_MACS)
    assert [step.iteration for step in steps] == list(range(1, len(steps) + 1))
    macs = [TINY_CNN_MACS] + [step.macs for step in steps]
    assert all(after < before for before, after in zip(macs, macs[1:]))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("conv1_weight,expected", [(2.0, "conv1"), (3.0, "conv2")])
def test_it_picks_the_move_losing_the_least_top1_per_mac_saved(conv1_weight, expected):
    # one conv1 filter saves 64*27 + 16*64*9 = 10944 MACs, one of conv2's 16 (10%: one) 64*72 + 10 = 4618:
    # 2 points lost for conv1 cost less per MAC than 1 for conv2 (2/10944 < 1/4618), 3 points cost more
    test_fn = _width_scores({"conv1": (8, conv1_weight), "conv2": (16, 1.0)})
    _, steps = greedy_pruner(_tiny_cnn(), None, 0.9, 0.1, test_fn, None, dummy_input=X)
    assert steps[0].layers == (expected,)
    assert steps[0].candidate_top1 == 90.0 - (conv1_weight if expected == "conv1" else 1.0)


def test_top1_ties_go_to_the_least_loss_per_mac_saved():
    test_fn = _width_scores({"conv1": (8, 3.0), "conv2": (16, 1.0)}, on="loss")
    _, steps = greedy_pruner(_tiny_cnn(), None, 0.9, 0.1, test_fn, None, dummy_input=X)
    assert steps[0].layers == ("conv2",) and steps[0].loss == 2.0


def test_a_gain_counts_as_no_loss_so_the_free_move_saving_most_macs_wins():
    test_fn = _width_scores({"conv2": (16, -5.0)})  # shrinking conv2 "improves" top-1, conv1 costs nothing
    _, steps = greedy_pruner(_tiny_cnn(), None, 0.9, 0.1, test_fn, None, dummy_input=X)
    assert steps[0].layers == ("conv1",)


def test_a_residual_stream_is_pruned_as_one_group_and_checkpoints_replay_it(tmp_path):
    torch.manual_seed(0)
    model = TinyResidualNet()
    scheduler = CompressionScheduler(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    _sgd_step(model, optimizer)
    test_fn = _width_scores({"block_conv1": (8, 50.0)})  # the block's inner filters are costly: the stream goes
    model, steps = greedy_pruner(model, None, 0.8, 0.1, test_fn, None, dummy_input=X, optimizer=optimizer,
                                 scheduler=scheduler)
    assert [step.layers for step in steps] == [("conv1", "block_conv2")] * 2
    assert [(step.channels_before, step.channels_after) for step in steps] == [(8, 7), (7, 6)]
    widths = (model.conv1.out_channels, model.bn1.num_features, model.block_conv1.in_channels,
              model.block_conv2.out_channels, model.block_bn2.num_features, model.fc.in_features)
    assert widths == (6,) * 6 and model.block_conv1.out_channels == 8
    _sgd_step(model, optimizer)  # the optimizer's momentum was sliced with the parameters
    assert [record["kind"] for record in scheduler.model_transforms] == ["thinning", "thinning"]
    path = save_checkpoint(0, None, model, optimizer=optimizer, scheduler=scheduler, dir=str(tmp_path))
    reloaded, _, _, _ = load_checkpoint(TinyResidualNet(), path)
    torch.testing.assert_close(reloaded.eval()(X), model.eval()(X))


def _sgd_step(model, optimizer):
    model.train()
    optimizer.zero_grad()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()


def test_greedy_csv_has_a_row_per_step(tmp_path):
    _, steps = greedy_pruner(_tiny_cnn(), None, 0.6, 0.25, _real_test_fn, None, dummy_input=X,
                             save_dir=str(tmp_path / "run"))
    with open(tmp_path / "run" / CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(steps) > 1
    assert list(rows[0]) == ["iteration", "layers", "channels_before", "channels_after", "macs", "density", "params",
                             "candidate_top1", "finetune_epochs", "top1", "top5", "loss"]
    for row, step in zip(rows, steps):
        assert (int(row["iteration"]), row["layers"], int(row["macs"]), float(row["top1"])) == \
               (step.iteration, " ".join(step.layers), step.macs, step.top1)


def test_no_csv_without_a_save_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    greedy_pruner(_tiny_cnn(), None, 0.9, 0.1, _real_test_fn, None, dummy_input=X)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("density,epochs", [(0.9, 1), (0.75, 2), (0.6, 4), (0.5, 4), (0.3, 4)])
def test_linear_grow_fine_tunes_longer_as_the_network_shrinks(density, epochs):
    assert finetuning_epochs("linear-grow", 4, density, 0.5) == epochs
    assert finetuning_epochs("constant", 4, density, 0.5) == 4


def _app_args(*flags):
    parser = ArgumentParser()
    add_greedy_pruner_args(parser)
    return parser.parse_args(list(flags))


def test_the_app_flags_choose_the_fine_tuning_after_each_step():
    calls = []
    args = _app_args("--greedy", "--greedy-ft-epochs", "4", "--greedy-finetuning-policy", "linear-grow")
    _, steps = greedy_pruner(_tiny_cnn(), args, 0.5, 0.25, _real_test_fn, _sgd_train_fn(calls), dummy_input=X)
    assert calls == [step.finetune_epochs for step in steps] and len(calls) > 2
    assert calls == sorted(calls) and calls[0] < calls[-1] == 4
    calls.clear()
    _, steps = greedy_pruner(_tiny_cnn(), _app_args("--greedy-ft-epochs", "2"), 0.8, 0.25, _real_test_fn,
                             _sgd_train_fn(calls), dummy_input=X)
    assert calls == [2] * len(steps)
    calls.clear()
    greedy_pruner(_tiny_cnn(), _app_args("--greedy-ft-epochs", "0"), 0.8, 0.25, _real_test_fn, _sgd_train_fn(calls),
                  dummy_input=X)
    assert calls == []


def test_the_search_is_deterministic():
    def run():
        _, steps = greedy_pruner(_tiny_cnn(), None, 0.5, 0.25, _real_test_fn, _sgd_train_fn([]), dummy_input=X)
        return [(step.layers, step.macs, step.top1, step.loss, step.recipe.modules) for step in steps]
    assert run() == run()


def test_on_step_sees_each_step_and_the_pruned_model():
    seen = []
    model, steps = greedy_pruner(_tiny_cnn(), None, 0.7, 0.25, _real_test_fn, None, dummy_input=X,
                                 on_step=lambda step, m: seen.append((step, model_macs(m, X))))
    assert [step for step, _ in seen] == steps and [macs for _, macs in seen] == [step.macs for step in steps]


def test_the_app_flags_defaults_and_bad_values():
    args = _app_args()
    assert (args.greedy, args.greedy_ft_epochs, args.greedy_target_density, args.greedy_pruning_step,
            args.greedy_finetuning_policy) == (False, 1, None, 0.1, "constant")
    for flags in (["--greedy-pruning-step", "0"], ["--greedy-target-density", "1"], ["--greedy-ft-epochs", "-1"],
                  ["--greedy-finetuning-policy", "exponential"]):
        with pytest.raises(SystemExit) as exit_info:
            _app_args(*flags)
        assert exit_info.value.code == 2


def test_an_unreachable_target_is_refused_before_any_evaluation():
    calls = []
    # at the minimum one filter each is left: 1*64*27 + 1*64*9 + 10 = 2314 MACs, density 0.0264
    with pytest.raises(ArgumentError, match=r"target density 0.01 is unreachable.*2,314 .*at least 0.0264"):
        greedy_pruner(_tiny_cnn(), None, 0.01, 0.1, lambda model: calls.append(model), None, dummy_input=X)
    assert calls == []


@pytest.mark.parametrize("argument,value", [("fraction_to_prune", 0), ("fraction_to_prune", 1.0),
                                            ("pruning_step", 0), ("pruning_step", 1), ("pruning_step", 1.5),
                                            ("pruning_step", True), ("pruning_step", "0.1")])
def test_fractions_outside_zero_one_are_argument_errors(argument, value):
    arguments = {"fraction_to_prune": 0.5, "pruning_step": 0.1, argument: value}
    with pytest.raises(ArgumentError, match=f"{argument} must be a number in \\(0, 1\\)"):
        greedy_pruner(_tiny_cnn(), None, test_fn=_real_test_fn, train_fn=None, dummy_input=X, **arguments)


@pytest.mark.parametrize("settings,match", [({"greedy_ft_epochs": -1}, "greedy_ft_epochs must be an integer"),
                                            ({"greedy_finetuning_policy": "exp"}, "must be one of")])
def test_bad_fine_tuning_settings_are_argument_errors(settings, match):
    with pytest.raises(ArgumentError, match=match):
        greedy_pruner(_tiny_cnn(), argparse.Namespace(**settings), 0.5, 0.1, _real_test_fn, None, dummy_input=X)


def test_a_test_fn_that_does_not_return_three_scores_is_an_argument_error():
    with pytest.raises(ArgumentError, match=r"must return \(top1, top5, loss\), got 0.5"):
        greedy_pruner(_tiny_cnn(), None, 0.5, 0.1, lambda model: 0.5, None, dummy_input=X)


def test_without_an_example_input_it_asks_for_one():
    with pytest.raises(ThinningError, match="dummy_input"):
        greedy_pruner(_tiny_cnn(), None, 0.5, 0.1, _real_test_fn, None)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return self.fc(x.mean((2, 3)))


def test_a_model_that_cannot_be_traced_names_its_forward():
    with pytest.raises(GraphCaptureError, match="cannot trace Branchy.forward.*control flow"):
        greedy_pruner(Branchy(), None, 0.5, 0.1, _real_test_fn, None, dummy_input=X)


class Opaque(nn.Module):
    def forward(self, x):
        return -x if x.sum() > 0 else x


class OpaqueInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = Opaque()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.gate(self.conv(x)).mean((2, 3)))


def test_a_model_whose_channels_all_meet_an_unknown_op_names_the_op():
    with pytest.raises(ThinningError, match="no channel group has a removable filter left.*'gate' \\(Opaque\\)"):
        greedy_pruner(OpaqueInside(), None, 0.5, 0.1, _real_test_fn, None, dummy_input=X)
