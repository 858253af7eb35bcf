#!/usr/bin/env python3
"""Post-training quantization of a trained classifier with the library API, end to end.

Loads a checkpoint, evaluates the float model, then quantizes it as the ``--qe-*`` / ``--lapq-*`` flags
say (the same flags and driver as ``compress_classifier.py --quantize-eval``): calibration on part of the
test set, optional LAPQ, simulated-quantized evaluation, ``quantized_checkpoint.pth.tar``, and with
``--qe-convert-pytorch`` / ``--qe-export-onnx`` the PyTorch int8 and ONNX Runtime models, their accuracy and
their agreement with the simulated model. Writes ``results.json`` in the run directory.

Example (ResNet-20 trained on the embedded ``digits`` dataset)::

    python examples/quantization/post_train_quant/ptq_classifier.py --resume-from best.pth.tar \\
        --qe-mode-acts asym_u --qe-mode-wts sym --qe-per-channel --qe-convert-pytorch --qe-export-onnx
"""
import json
import logging
import os
import time

import torch
import torch.nn.functional as F

import distiller
import distiller.cli
from distiller.apputils import load_checkpoint
from distiller.apputils.data_loaders import load_data
from distiller.cli.quantization import check_quantization_args, quantize_and_evaluate
from distiller.models import create_model

msglogger = logging.getLogger("ptq_classifier")


def get_args_parser():
    parser = distiller.cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resume-from", required=True, metavar="PATH", help="checkpoint of the trained model")
    parser.add_argument("--arch", "-a", default=None, help="architecture (default: the checkpoint's)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data", default=None, metavar="DATASET_DIR", help="dataset directory (not for digits)")
    parser.add_argument("--batch-size", "-b", type=int, default=64)
    parser.add_argument("--out-dir", "-o", default="logs")
    parser.add_argument("--name", "-n", default="ptq")
    parser.add_argument("--seed", type=int, default=0)
    distiller.cli.add_post_train_quant_args(parser)
    return parser


def evaluate(model, loader):
    """Top-1 (percent) and mean cross-entropy of ``model`` over ``loader``."""
    model.eval()
    device = distiller.model_device(model)
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for inputs, target in loader:
            inputs, target = inputs.to(device), target.to(device)
            output = model(inputs)
            loss += F.cross_entropy(output, target, reduction="sum").item()
            correct += (output.argmax(1) == target).sum().item()
            total += target.numel()
    return {"Top1": 100.0 * correct / total, "Loss": loss / total}


def main(args):
    run_dir = os.path.join(args.out_dir, f"{args.name}___{time.strftime('%Y.%m.%d-%H%M%S')}")
    os.makedirs(run_dir, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(os.path.join(run_dir, "ptq.log"))])
    distiller.set_seed(args.seed)
    checkpoint = torch.load(args.resume_from, map_location="cpu", weights_only=True)
    arch = args.arch or checkpoint["arch"]
    _, _, test_loader, input_shape = load_data(args.dataset, arch, args.data, args.batch_size, 0, test_only=True,
                                               seed=args.seed)
    model = create_model(False, args.dataset, arch, parallel=False)
    load_checkpoint(model, args.resume_from)
    model.eval()
    check_quantization_args(model, args)  # bad settings fail before the float evaluation reads the data
    results = {"arch": arch, "dataset": args.dataset, "checkpoint": args.resume_from,
               "float": evaluate(model, test_loader)}
    msglogger.info("Float model: top1 %.2f  loss %.4f", results["float"]["Top1"], results["float"]["Loss"])
    dummy_input = torch.zeros(input_shape, device=distiller.model_device(model))
    results.update(quantize_and_evaluate(model, args, test_loader, evaluate, dummy_input, run_dir, arch=arch))
    results["top1_drop"] = results["float"]["Top1"] - results["quantized"]["Top1"]
    with open(os.path.join(run_dir, "results.json"), "w") as stream:
        json.dump(results, stream, indent=2)
    msglogger.info("Results written to %s", os.path.join(run_dir, "results.json"))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
