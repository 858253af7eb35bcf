"""Argument groups shared by the sample applications (the library itself never parses arguments).

Each ``add_*_args(parser)`` adds one group with Distiller's flag names, so applications compose their
parser from the groups they need and later features plug in their own group::

    parser = distiller.cli.ArgumentParser(description="my compression app")
    distiller.cli.add_common_args(parser)
    distiller.cli.add_thinning_args(parser)
    args = parser.parse_args()
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["ArgumentParser", "add_common_args", "add_dataset_args", "add_model_args", "add_training_args",
           "add_optimizer_args", "add_resume_args", "add_device_args", "add_output_args", "positive_int",
           "non_negative_int", "positive_float", "fraction", "gpu_ids"]


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are two short lines (the offending flag and a
    pointer to ``--help``) instead of the full usage text, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\nRun '{self.prog} --help' for the list of options.\n")
        sys.exit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def fraction(low_inclusive: bool, high_inclusive: bool) -> Callable[[str], float]:
    """Returns an argparse type accepting a float in [0, 1] with the given ends excluded/included."""
    def parse(text: str) -> float:
        value = float(text)
        above = value >= 0 if low_inclusive else value > 0
        below = value <= 1 if high_inclusive else value < 1
        if not (above and below):
            raise argparse.ArgumentTypeError(
                f"must be in {'[' if low_inclusive else '('}0, 1{']' if high_inclusive else ')'}, got {text}")
        return value
    parse.__name__ = "fraction"
    return parse


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def gpu_ids(text: str) -> list[int]:
    """argparse type: a comma-separated list of CUDA device indices, e.g. ``0,1``."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated device indices such as 0,1; got '{text}'") from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"device indices must be >= 0, got '{text}'")
    return ids


def add_dataset_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``DATASET_DIR`` (optional), ``--dataset``, loader sizes and the train/validation split."""
    parser.add_argument("data", metavar="DATASET_DIR", nargs="?", default=None,
                        help="path to the dataset; omit it to use the embedded 'digits' dataset")
    group = parser.add_argument_group("Dataset arguments")
    group.add_argument("--dataset", default=None,
                       help="cifar10 | digits | imagenet | mnist (default: digits without DATASET_DIR; with "
                            "it, guessed from the directory name, else from the architecture)")
    group.add_argument("-j", "--workers", type=non_negative_int, default=4, metavar="N",
                       help="number of data-loading worker processes (default: 4; 0 loads in the main process)")
    group.add_argument("-b", "--batch-size", type=positive_int, default=256, metavar="N",
                       help="mini-batch size (default: 256)")
    group.add_argument("--validation-split", "--valid-size", "--vs", dest="validation_split",
                       type=fraction(True, False), default=0.1,
                       help="portion of the training set set aside for validation (default: 0.1)")
    for kind, short in (("train", "etrs"), ("valid", "evs"), ("test", "etes")):
        group.add_argument(f"--effective-{kind}-size", f"--{short}", dest=f"effective_{kind}_size",
                           type=fraction(False, True), default=1.0,
                           help=f"portion of the {kind} set used in each epoch (default: 1.0)"
                                + ("; applied after --validation-split" if kind != "test" else ""))
    return group


def add_model_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--arch`` and how the model is built."""
    group = parser.add_argument_group("Model arguments")
    group.add_argument("--arch", "-a", metavar="ARCH", default=None,
                       help="model architecture, see distiller.models.ALL_MODEL_NAMES (default: the "
                            "checkpoint's with --resume-from, else resnet20_cifar for digits/cifar10, "
                            "simplenet_mnist for mnist, resnet18 for imagenet)")
    group.add_argument("--pretrained", action="store_true",
                       help="start from pretrained weights (torchvision ImageNet models; needs network access)")
    group.add_argument("--load-serialized", action="store_true",
                       help="do not wrap the model in DataParallel, even on several GPUs")
    return group


def add_training_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Epochs, evaluation-only mode, the compression schedule and what to report."""
    group = parser.add_argument_group("Training arguments")
    group.add_argument("--epochs", type=non_negative_int, default=90, metavar="N",
                       help="number of total epochs to run (default: 90)")
    group.add_argument("-e", "--evaluate", action="store_true", help="evaluate the model on the test set and exit")
    group.add_argument("--compress", metavar="SCHEDULE_YAML", default=None,
                       help="compression schedule (YAML) to apply while training")
    group.add_argument("--print-freq", "-p", type=positive_int, default=10, metavar="N",
                       help="log training progress every N mini-batches (default: 10)")
    group.add_argument("--confusion", action="store_true", help="print the confusion matrix of the test set")
    group.add_argument("--num-best-scores", type=positive_int, default=1, metavar="N",
                       help="number of best validation scores to track and report (default: 1)")
    group.add_argument("--save-untrained-model", action="store_true",
                       help="save the randomly initialised model before training (for lottery-ticket studies)")
    return group


def add_optimizer_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """SGD hyper-parameters."""
    group = parser.add_argument_group("Optimizer arguments")
    group.add_argument("--lr", "--learning-rate", type=positive_float, default=0.1, metavar="LR",
                       help="initial learning rate (default: 0.1)")
    group.add_argument("--momentum", type=float, default=0.9, metavar="M", help="SGD momentum (default: 0.9)")
    group.add_argument("--weight-decay", "--wd", type=float, default=1e-4, metavar="W",
                       help="weight decay (default: 1e-4)")
    return group


def add_resume_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Starting from a checkpoint."""
    group = parser.add_argument_group("Resuming arguments")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--resume-from", metavar="PATH", default=None,
                        help="checkpoint to resume training from (model, optimizer, epoch, and the compression "
                             "schedule, which continues without --compress)")
    source.add_argument("--exp-load-weights-from", metavar="PATH", default=None,
                        help="checkpoint to load the weights from, starting a new training run (experimental)")
    group.add_argument("--reset-optimizer", action="store_true",
                       help="with --resume-from: use a fresh optimizer and start again from epoch 0")
    group.add_argument("--load-non-strict", action="store_true",
                       help="load a checkpoint that does not fit the model exactly: the matching entries load, the "
                            "others stay at their initial (random) values and are listed (default: such a "
                            "checkpoint is an error)")
    return group


def add_device_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Devices and reproducibility."""
    group = parser.add_argument_group("Device and reproducibility arguments")
    group.add_argument("--gpus", type=gpu_ids, default=None, metavar="DEV_ID",
                       help="comma-separated CUDA device indices to use (default: all available)")
    group.add_argument("--cpu", action="store_true", help="use the CPU even when CUDA is available")
    group.add_argument("--deterministic", "--det", action="store_true",
                       help="reproducible run: deterministic algorithms and a fixed seed (default seed 0)")
    group.add_argument("--seed", type=int, default=None,
                       help="seed of the Python, NumPy and torch generators (default: random, or 0 with "
                            "--deterministic; a resumed run keeps its checkpoint's seed)")
    group.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                       help="train with automatic mixed precision in this dtype (torch.autocast; fp16 needs CUDA "
                            "and scales the loss with a GradScaler)")
    group.add_argument("--channels-last", action="store_true",
                       help="train with the weights and inputs in channels-last memory format (faster convolutions "
                            "on GPUs with tensor cores)")
    group.add_argument("--compile", action="store_true",
                       help="train the model compiled by torch.compile (recompiled when thinning changes its "
                            "shapes)")
    return group


def add_output_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Where the run writes and how much it says."""
    group = parser.add_argument_group("Output arguments")
    group.add_argument("--name", "-n", metavar="NAME", default=None,
                       help="experiment name, the prefix of the run directory")
    group.add_argument("--out-dir", "-o", dest="output_dir", default="logs", metavar="OUTPUT_DIR",
                       help="directory that receives the run directory (default: logs)")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="log debug messages, and show tracebacks of errors")
    group.add_argument("--export-onnx", nargs="?", const="", default=None, metavar="PATH",
                       help="export the (loaded) float model to ONNX and exit (default path: "
                            "<run dir>/<arch>.onnx)")
    return group


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds every group of this module to ``parser``; returns the parser."""
    for add in (add_dataset_args, add_model_args, add_training_args, add_optimizer_args, add_resume_args,
                add_device_args, add_output_args):
        add(parser)
    return parser
