#!/usr/bin/env python3
"""Train, compress and evaluate an image classifier with a distiller compression schedule.

AGP pruning of ResNet-20 on the embedded ``digits`` dataset (no download), from the repository root::

    python examples/classifier_compression/compress_classifier.py -a resnet20_cifar --epochs 20 -b 64 --lr 0.1 \\
        --det -n resnet20_digits_agp --compress examples/agp-pruning/resnet20_digits.schedule_agp.yaml

Each run writes to ``<out-dir>/<name>___<timestamp>/``: the log file, TensorBoard events, CSVs of the
training progress, ``checkpoint.pth.tar`` / ``best.pth.tar`` and, at the end, the per-layer compute table
(``compute.csv``), plots (``epochs.png``, ``layer_sparsity.png``) and ``summary.json``. ``--summary KIND``
prints a summary of the (loaded) model and ``--sense GROUP`` analyses its pruning sensitivity
(``sensitivity.csv``/``.png``), then exit.
Resume an interrupted run with ``--resume-from <run dir>/checkpoint.pth.tar`` (and the same schedule).

The work is done by the library's engine, :mod:`distiller.apputils.image_classifier` (Distiller's
``ClassifierCompressor``); this script only decides what to run.
"""
import os

from distiller.apputils.app_runner import progress_logging, run_cli
from distiller.apputils.classifier_analysis import RunReports, run_sensitivity, run_summaries
from distiller.apputils.classifier_reports import quantization_summary
from distiller.apputils.image_classifier import ClassifierCompressor, init_classifier_compression_arg_parser


def get_args_parser():
    """The command line: distiller's common groups, thinning and post-training quantization (with LAPQ)."""
    return init_classifier_compression_arg_parser(include_ptq_lapq_args=True)


def main(args):
    """Runs the application; returns the run's summary (None when it only exports to ONNX, collects
    activation histograms, prints summaries or analyses the pruning sensitivity)."""
    app = ClassifierCompressor(args, script_dir=os.path.dirname(os.path.abspath(__file__)))
    with app, progress_logging():
        if args.export_onnx is not None:
            app.export_onnx()
            return None
        if args.activation_histograms:
            app.collect_activation_histograms()
            return None
        if args.summary:
            run_summaries(app)
            return None
        if args.sensitivity:
            run_sensitivity(app)
            return None
        reports = None if args.evaluate else RunReports(app)
        if args.greedy:
            app.greedy_prune()
        elif not args.evaluate:
            if args.save_untrained_model:
                app.save_untrained_model()
            app.run_training_loop()
        if args.thinnify:
            app.thinnify()
        if reports is not None:
            reports.close()
        summary = app.summary(app.test())
        if args.quantize_eval:
            summary["quantized"] = quantization_summary(app.quantize_and_evaluate())
    return app.write_summary(summary)


if __name__ == "__main__":
    raise SystemExit(run_cli(main, get_args_parser()))
