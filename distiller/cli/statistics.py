"""Argument group for the activation statistics the sample applications can collect."""
import argparse

from .common import fraction

__all__ = ["add_statistics_args"]


def add_statistics_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Distiller's ``--activation-stats PHASE...`` and ``--activation-histograms PORTION``."""
    group = parser.add_argument_group("Activation statistics arguments")
    group.add_argument("--activation-stats", "--act-stats", nargs="+", metavar="PHASE", default=[],
                       choices=["train", "valid", "test"],
                       help="collect activation statistics (ReLU output sparsity, per-channel L1/APoZ/mean, "
                            "per-sample records of conv outputs) in these phases: train, valid and/or test; "
                            "saved as xlsx under <run dir>/activation_stats/<phase>/ (slows training down)")
    group.add_argument("--activation-histograms", "--act-hist", type=fraction(False, True), default=None,
                       metavar="PORTION_OF_TEST_SET",
                       help="collect activation histograms on this portion of the test set, save them to "
                            "<run dir>/acts_histograms.pt and exit (two passes: ranges, then histograms)")
    return group
