"""distiller.apputils.sequence_app: the training epoch with a schedule, checkpoints with vocabularies, PTQ."""
import argparse

import pytest
import torch
from torch import nn

import distiller
from distiller.apputils import sequence_app as app
from distiller.apputils.text_data import Vocabulary
from distiller.errors import ArgumentError, CheckpointError
from distiller.quantization.range_linear.wrappers import RangeLinearQuantWrapper


def _args(*argv):
    parser = argparse.ArgumentParser()
    app.add_sequence_app_args(parser, epochs=1, lr=0.1, batch_size=4)
    return parser.parse_args(list(argv))


def _mse(model, batch):
    return nn.functional.mse_loss(model(batch[0]), batch[1])


def test_train_one_epoch_runs_the_schedule_and_learns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    schedule = {"version": 1, "pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.5,
                                                "final_sparsity": 0.5, "weights": ["0.weight"]}},
                "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 2,
                              "frequency": 1}]}
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    inputs = torch.randn(64, 6)
    batches = [(x, x.sum(dim=1, keepdim=True)) for x in inputs.split(8)]
    first = app.train_one_epoch(model, batches, _mse, optimizer, 0, scheduler)
    last = app.train_one_epoch(model, batches, _mse, optimizer, 1, scheduler, grad_clip=1.0)
    assert last < first
    assert float((model[0].weight == 0).float().mean()) == 0.5  # masked, and kept masked after every step
    assert app.weight_sparsity(model) == pytest.approx(100 * 18 / 42)


def test_checkpoint_round_trip_checks_architecture_and_vocabulary(tmp_path):
    vocab = Vocabulary(["<unk>", "a", "b"])
    model = nn.Embedding(3, 2)
    path = app.save_model(str(tmp_path), "arch_x", model, 0, {"num": 3}, {"words": vocab})
    assert app.read_model_checkpoint(path, "arch_x", {"words": vocab}) == {"num": 3}
    fresh = nn.Embedding(3, 2)
    app.load_model_weights(fresh, path)
    assert torch.equal(fresh.weight, model.weight)
    with pytest.raises(CheckpointError, match=r"words vocabulary of 3 words, this data has 3 .*index 2: 'b' in the"):
        app.read_model_checkpoint(path, "arch_x", {"words": Vocabulary(["<unk>", "a", "c"])})
    with pytest.raises(CheckpointError, match="is not a checkpoint of arch_y .*'arch_x'"):
        app.read_model_checkpoint(path, "arch_y", {"words": vocab})
    with pytest.raises(CheckpointError, match="has no other vocabulary"):
        app.read_model_checkpoint(path, "arch_x", {"other": vocab})


@pytest.mark.parametrize("flag", ["--qe-convert-pytorch", "--qe-lapq", "--qe-export-onnx"])
def test_classifier_only_quantization_flags_are_refused(flag):
    with pytest.raises(ArgumentError, match=f"{flag} is supported by the image-classifier application only"):
        app.check_sequence_app_args(nn.Linear(2, 2), _args("--quantize-eval", flag))


def test_quantize_post_training_calibrates_on_the_given_batches(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    inputs = torch.randn(32, 4)
    expected = model(inputs)
    args = _args("--quantize-eval", "--qe-mode", "asym_u")
    app.check_sequence_app_args(model, args)
    app.quantize_post_training(model, args, lambda m: m(inputs), inputs[:2], str(tmp_path))
    assert (tmp_path / "acts_quantization_stats.yaml").is_file()
    assert isinstance(model[0], RangeLinearQuantWrapper) and model[0].preset_act_stats
    torch.testing.assert_close(model(inputs), expected, atol=0.05, rtol=0.0)
