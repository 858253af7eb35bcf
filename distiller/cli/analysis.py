"""Argument group for analysing a model instead of (or while) training it: Distiller's ``--summary``,
``--sense``/``--sense-range``, ``--masks-sparsity`` and ``--param-hist``."""
import argparse

from ..sensitivity import SENSITIVITY_GROUPS
from ..summaries.model_summary import SUMMARY_KINDS

__all__ = ["add_analysis_args", "DEFAULT_SENSE_RANGE"]

#: ``--sense-range``'s default: sparsity levels 0, 0.05, ..., 0.90 (``numpy.arange(0.0, 0.95, 0.05)``).
DEFAULT_SENSE_RANGE = [0.0, 0.95, 0.05]


def add_analysis_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Adds the model analysis flags to ``parser``; returns their group."""
    group = parser.add_argument_group("Analysis arguments")
    group.add_argument("--summary", type=lambda s: s.lower(), choices=SUMMARY_KINDS, action="append", default=None,
                       help="print a summary of the model and exit (repeatable): sparsity (the weights sparsity "
                            "table), compute (MACs per layer), model (the module tree), modules (the leaf modules), "
                            "png / png_w_params (the graph, with parameters, drawn to <run dir>/model.png; needs "
                            "Graphviz's dot)")
    group.add_argument("--sense", dest="sensitivity", choices=list(SENSITIVITY_GROUPS), default=None,
                       help="pruning sensitivity analysis on the test set (see --effective-test-size): prune each "
                            "weight alone at each --sense-range level and test; writes sensitivity.csv and "
                            "sensitivity.png in the run directory and exits (filter/channel: with the layers "
                            "coupled to those filters/channels)")
    group.add_argument("--sense-range", dest="sensitivity_range", type=float, nargs=3, default=DEFAULT_SENSE_RANGE,
                       metavar=("START", "STOP", "STEP"),
                       help="the sparsity levels of --sense: numpy.arange(START, STOP, STEP) (default: 0.0 0.95 "
                            "0.05)")
    group.add_argument("--masks-sparsity", action="store_true",
                       help="print the sparsity of the pruning masks at the end of each epoch")
    group.add_argument("--benchmark", action="store_true",
                       help="at the end of a compression run, time the dense architecture against the compressed "
                            "model (latency and throughput at batch 1 and --batch-size, parameters, MACs, file "
                            "size) and log the table; also benchmark.csv in the run directory")
    group.add_argument("--param-hist", action="store_true",
                       help="log a histogram of every parameter tensor to TensorBoard at the end of each epoch "
                            "(uses disk space)")
    return group
