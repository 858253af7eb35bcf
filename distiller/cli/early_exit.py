"""Argument group for training and evaluating early-exit networks (``*_earlyexit`` architectures)."""
import argparse

__all__ = ["add_earlyexit_args"]


def add_earlyexit_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Distiller's ``--earlyexit_lossweights`` and ``--earlyexit_thresholds`` (one value per early exit, the
    final exit excluded); see :mod:`distiller.apputils.classifier_earlyexit`."""
    group = parser.add_argument_group("Early exit arguments")
    group.add_argument("--earlyexit_lossweights", "--earlyexit-lossweights", type=float, nargs="*", default=None,
                       metavar="WEIGHT",
                       help="the training loss weight of each early exit (e.g. --earlyexit_lossweights 0.3); the "
                            "final exit gets 1 - their sum, so they must sum to less than 1")
    group.add_argument("--earlyexit_thresholds", "--earlyexit-thresholds", type=float, nargs="*", default=None,
                       metavar="ENTROPY",
                       help="the softmax-entropy threshold of each early exit (e.g. --earlyexit_thresholds 0.8): in "
                            "evaluation a sample leaves at the first exit whose entropy is below its threshold")
    return group
