"""Argument groups for pruning-related features of the sample applications."""
import argparse

__all__ = ["add_thinning_args"]


def add_thinning_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--thinnify``: physically remove the pruned (all-zero) filters after training, or after loading a
    checkpoint with ``--evaluate``, and save the smaller model (``distiller.thinning.remove_filters``)."""
    group = parser.add_argument_group("Thinning arguments")
    group.add_argument("--thinnify", action="store_true",
                       help="physically remove zero filters (after training, or with --evaluate after loading "
                            "the checkpoint), save the smaller model and report its parameters and MACs")
    return group
