"""Tests of the reusable argparse groups in distiller.cli."""
import pytest

import distiller.cli as cli


@pytest.fixture
def parser():
    parser = cli.ArgumentParser(prog="app")
    cli.add_common_args(parser)
    cli.add_thinning_args(parser)
    return parser


def test_defaults_follow_distiller(parser):
    args = parser.parse_args([])
    assert (args.data, args.dataset, args.arch) == (None, None, None)
    assert (args.epochs, args.batch_size, args.lr, args.momentum, args.weight_decay) == (90, 256, 0.1, 0.9, 1e-4)
    assert (args.workers, args.print_freq, args.validation_split, args.num_best_scores) == (4, 10, 0.1, 1)
    assert (args.output_dir, args.export_onnx, args.thinnify, args.deterministic) == ("logs", None, False, False)


def test_distiller_aliases(parser):
    args = parser.parse_args(["DIR", "-a", "resnet20_cifar", "--vs", "0.2", "--etrs", "0.5", "--evs", "0.25",
                              "--etes", "0.75", "--det", "--wd", "5e-4", "--learning-rate", "0.3", "-o", "out",
                              "-n", "exp", "-p", "5", "-j", "0", "-b", "32", "-e", "-v"])
    assert (args.data, args.arch, args.validation_split) == ("DIR", "resnet20_cifar", 0.2)
    assert (args.effective_train_size, args.effective_valid_size, args.effective_test_size) == (0.5, 0.25, 0.75)
    assert (args.deterministic, args.weight_decay, args.lr) == (True, 5e-4, 0.3)
    assert (args.output_dir, args.name) == ("out", "exp")
    assert (args.print_freq, args.workers, args.batch_size, args.evaluate, args.verbose) == (5, 0, 32, True, True)


def test_export_onnx_path_is_optional(parser):
    assert parser.parse_args(["--export-onnx"]).export_onnx == ""
    assert parser.parse_args(["--export-onnx", "m.onnx"]).export_onnx == "m.onnx"


def test_gpu_ids_are_parsed(parser):
    assert parser.parse_args(["--gpus", "0,2"]).gpus == [0, 2]


@pytest.mark.parametrize("argv, fragment", [
    (["--validation-split", "1.5"], "[0, 1)"),
    (["--etrs", "0"], "(0, 1]"),
    (["-b", "0"], "positive integer"),
    (["--epochs", "-1"], ">= 0"),
    (["--lr", "0"], "> 0"),
    (["--gpus", "a,b"], "device indices"),
    (["--resume-from", "a", "--exp-load-weights-from", "b"], "not allowed with"),
])
def test_bad_values_give_two_line_errors_and_status_2(parser, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and err.startswith("app: error: ") and len(err.splitlines()) == 2


def test_groups_can_be_composed_individually():
    parser = cli.ArgumentParser(prog="app")
    cli.add_optimizer_args(parser)
    args = parser.parse_args(["--lr", "0.5"])
    assert vars(args) == {"lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4}
