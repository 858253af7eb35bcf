"""Speed of the analysis tools: element-wise pruning sensitivity of resnet20_cifar on the digits test split,
and the compute summary of torchvision's ResNet-50.

(a) ``sensitivity``: :func:`distiller.perform_sensitivity_analysis` over the 19 3x3 convolution weights of
    resnet20_cifar (``conv1`` and the two convolutions of each of the 9 residual blocks) x 10 levels
    (0.0, 0.1, ..., 0.9), each test a pass over the 360 digits test images, against the same work written
    in plain PyTorch (``torch.nn.utils.prune.l1_unstructured`` on a fresh copy per test, the same evaluation
    loop). The variants run interleaved; medians in seconds and the ratio are reported, with the largest top-1
    difference between their results (both prune ``floor(level * n)`` elements of smallest magnitude; ties may
    be broken differently). Distiller tests the unpruned model once for all the level-0 points (18 tests
    fewer). Issue target: distiller <= 60 s on 2 CPU cores. The model is seeded and trained for
    ``--train-epochs`` (default 2) on the digits training split first, so that the curves are not flat
    (training is not timed). ``--channels-last`` runs both variants in oneDNN's channels-last layout.
(b) ``model_performance_summary``: one call on ResNet-50 at 224x224 (graph hooks + one forward pass); the
    median time over the repeats and the total MACs. Issue targets: <= 1 s, and 4.09 G MACs (torchvision's
    count of convolution and fully connected multiply-accumulates: 4,089,184,256).

Prints one JSON object per result line and a final summary line with the machine.

Example::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sensitivity.py --repeats 3 --threads 2
"""
import argparse
import copy
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.utils.prune
import torchvision

from distiller import perform_sensitivity_analysis
from distiller.apputils.classifier_loop import evaluate, train_one_epoch
from distiller.apputils.data_loaders import load_data
from distiller.models import create_model
from distiller.summaries import model_performance_summary
from machine import machine

#: torchvision's ResNet-50 MACs (convolutions and fully connected layer, 224x224): its "4.09 GFLOPS".
RESNET50_MACS = 4_089_184_256


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant")
    parser.add_argument("--batch-size", type=int, default=360,
                        help="batch size (default 360: the whole test split in one batch)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--train-epochs", type=int, default=2,
                        help="epochs of SGD before the analysis, untimed (default 2: about 70%% top-1)")
    parser.add_argument("--channels-last", action="store_true",
                        help="run the sensitivity tests with channels-last weights (oneDNN's faster CPU layout)")
    parser.add_argument("--skip-sensitivity", action="store_true", help="only time the ResNet-50 summary")
    return parser


def conv3x3_weights(model):
    return [name for name, param in model.named_parameters() if param.dim() == 4 and param.shape[-1] == 3]


def distiller_sensitivity(model, weights, levels, test):
    return perform_sensitivity_analysis(model, weights, levels, test, "element")


def plain_pytorch_sensitivity(model, weights, levels, test):
    """The same tests with torch.nn.utils.prune: a fresh copy of the model per (weight, level)."""
    results = {}
    for name in weights:
        module_name = name.rsplit(".", 1)[0]
        results[name] = {}
        for level in levels:
            pruned = copy.deepcopy(model)
            module = pruned.get_submodule(module_name)
            # as many elements as distiller prunes (it rounds down; a float amount would round to nearest)
            count = math.floor(level * module.weight.numel() + 1e-9)
            # importance_scores: torch.nn.utils.prune views the weight as one row, which a channels-last weight is not
            torch.nn.utils.prune.l1_unstructured(module, "weight", amount=count,
                                                 importance_scores=module.weight.detach().contiguous())
            results[name][level] = test(pruned)
    return results


VARIANTS = {"distiller": distiller_sensitivity, "plain_pytorch": plain_pytorch_sensitivity}


def bench_sensitivity(args):
    torch.manual_seed(0)
    model = create_model(False, "digits", "resnet20_cifar", parallel=False, device_ids=-1)
    train_loader, _, _, _ = load_data("digits", "resnet20_cifar", None, 32, 0, validation_split=0.0, seed=0)
    _, _, test_loader, _ = load_data("digits", "resnet20_cifar", None, args.batch_size, 0, test_only=True)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for epoch in range(args.train_epochs):
        train_one_epoch(model, criterion, optimizer, train_loader, epoch, print_freq=10 ** 6)

    def test(model):
        scores = evaluate(model, criterion, test_loader)
        return scores["Top1"], scores["Top5"], scores["Loss"]

    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights, levels = conv3x3_weights(model), [round(x, 2) for x in np.arange(0.0, 0.95, 0.1)]
    assert (len(weights), len(levels)) == (19, 10)
    times = {name: [] for name in VARIANTS}
    results = {}
    for _ in range(args.repeats):
        for name, run in VARIANTS.items():
            start = time.perf_counter()
            results[name] = run(model, weights, levels, test)
            times[name].append(time.perf_counter() - start)
    top1 = {name: [results[name][w][lvl][0] for w in weights for lvl in levels] for name in VARIANTS}
    agree = float(np.max(np.abs(np.subtract(top1["distiller"], top1["plain_pytorch"]))))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(json.dumps({"bench": "sensitivity", "variant": name, "weights": len(weights), "levels": len(levels),
                          "test_samples": len(test_loader.dataset), "channels_last": args.channels_last,
                          "median_s": round(medians[name], 3),
                          "runs_s": [round(x, 3) for x in t]}))
    return {"sensitivity_s": round(medians["distiller"], 3),
            "sensitivity_ratio_to_plain": round(medians["distiller"] / medians["plain_pytorch"], 3),
            "sensitivity_target_met": medians["distiller"] <= 60.0, "max_top1_difference": agree}


def bench_resnet50_summary(args):
    model, x = torchvision.models.resnet50(), torch.randn(1, 3, 224, 224)
    times, macs = [], None
    for _ in range(max(args.repeats, 3)):
        start = time.perf_counter()
        macs = int(model_performance_summary(model, x)["MACs"].sum())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"bench": "model_performance_summary", "model": "resnet50", "macs": macs,
                      "median_s": round(median, 3), "runs_s": [round(t, 3) for t in times]}))
    return {"resnet50_summary_s": round(median, 3), "resnet50_macs": macs, "resnet50_macs_g": round(macs / 1e9, 2),
            "resnet50_targets_met": median <= 1.0 and macs == RESNET50_MACS}


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = bench_resnet50_summary(args)
    if not args.skip_sensitivity:
        summary.update(bench_sensitivity(args))
    print(json.dumps({"summary": summary, "machine": machine()}))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
