#!/usr/bin/env python3
"""Post-training quantization of a trained classifier, end to end, over the library's classifier engine.

Loads a checkpoint, tests the float model, then quantizes it as the ``--qe-*`` / ``--lapq-*`` flags say (the
same flags and driver as ``compress_classifier.py -e --quantize-eval``): calibration on part of the test set,
optional LAPQ, simulated-quantized evaluation, ``quantized_checkpoint.pth.tar``, and with
``--qe-convert-pytorch`` / ``--qe-export-onnx`` the PyTorch int8 and ONNX Runtime models, their accuracy and
their agreement with the simulated model. Writes ``results.json`` in the run directory.

Example (ResNet-20 trained on the embedded ``digits`` dataset)::

    python examples/quantization/post_train_quant/ptq_classifier.py --resume-from best.pth.tar \\
        --qe-mode-acts asym_u --qe-mode-wts sym --qe-per-channel --qe-convert-pytorch --qe-export-onnx
"""
import json
import logging
import os

from distiller.apputils.app_runner import run_cli
from distiller.apputils.image_classifier import ClassifierCompressor, init_classifier_compression_arg_parser
from distiller.errors import ArgumentError

msglogger = logging.getLogger("ptq_classifier")


def get_args_parser():
    """The classifier command line with ``--evaluate --quantize-eval`` implied (name: ``ptq``)."""
    parser = init_classifier_compression_arg_parser(include_ptq_lapq_args=True)
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(evaluate=True, quantize_eval=True, name="ptq")
    return parser


def main(args):
    """Tests the float model, quantizes it and tests the quantized versions; returns the results."""
    if not args.resume_from:
        raise ArgumentError("--resume-from PATH is required: the checkpoint of the trained model to quantize")
    app = ClassifierCompressor(args, script_dir=os.path.dirname(os.path.abspath(__file__)))
    with app:
        top1, top5, loss = app.test()
        results = {"arch": app.experiment.arch, "dataset": app.experiment.dataset, "checkpoint": args.resume_from,
                   "float": {"Top1": top1, "Top5": top5, "Loss": loss}}
        results.update(app.quantize_and_evaluate())
    results["top1_drop"] = results["float"]["Top1"] - results["quantized"]["Top1"]
    path = os.path.join(app.logdir, "results.json")
    with open(path, "w") as stream:
        json.dump(results, stream, indent=2)
    msglogger.info("Results written to %s", path)
    return results


if __name__ == "__main__":
    raise SystemExit(run_cli(main, get_args_parser()))
