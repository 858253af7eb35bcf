"""Structured pruning + thinning of torchvision ResNet-50: distiller's ``prune_and_thin`` vs Torch-Pruning.

Both remove 50% of the filters of every dependency group, ranked by L1 norm, keeping the ``fc`` layer's
outputs, on a 224x224 example input:

* ``distiller``: ``distiller.thinning.prune_and_thin(model, x, 0.5, exclude=['fc'])``;
* ``torch_pruning``: ``tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
  pruning_ratio=0.5, ignored_layers=[model.fc]).step()``.

(a) wall time of the whole rank + thin call (graph capture included), both runs interleaved on fresh
copies of the same model; target median(distiller) / median(torch_pruning) <= 1.0.
(b) CPU latency at batch 8 of the dense and both thinned models (interleaved), reported as
``(dense_latency / thinned_latency) / (dense_MACs / thinned_MACs)``; target >= 0.8 for distiller.
(c) the same latencies on a GPU when CUDA is available (reported, no target).

Prints one JSON object per result line and a final summary line with the machine.

Example::

    python benchmarks/bench_thinning.py --repeats 5 --threads 1
"""
import argparse
import copy
import json
import statistics
import time

import torch
import torchvision

from distiller.summaries import model_macs, model_params
from distiller.thinning import prune_and_thin
from machine import machine


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the latency measurements")
    parser.add_argument("--latency-iters", type=int, default=3, help="timed forwards per latency run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser


def thin_with_distiller(model, x, fraction):
    prune_and_thin(model, x, fraction, exclude=["fc"])
    return model


def thin_with_torch_pruning(model, x, fraction):
    import torch_pruning as tp
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=fraction, ignored_layers=[model.fc])
    pruner.step()
    return model


THINNERS = {"distiller": thin_with_distiller, "torch_pruning": thin_with_torch_pruning}


def time_thinning(base, x, args):
    """Interleaved rank+thin runs on fresh copies; returns {variant: [seconds]} and the last thinned models."""
    times, models = {name: [] for name in THINNERS}, {}
    for _ in range(args.repeats):
        for name, thin in THINNERS.items():
            model = copy.deepcopy(base)
            start = time.perf_counter()
            models[name] = thin(model, x, args.fraction)
            times[name].append(time.perf_counter() - start)
    return times, models


def latency_ms(model, x, iters, device):
    """Median milliseconds of ``iters`` forwards (after one warm-up) on ``device``."""
    samples = []
    with torch.no_grad():
        model(x)
        for _ in range(iters):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def time_latency(models, batch, args, device):
    models = {name: model.to(device).eval() for name, model in models.items()}
    batch = batch.to(device)
    samples = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            samples[name].append(latency_ms(model, batch, args.latency_iters, device))
    return {name: statistics.median(values) for name, values in samples.items()}, samples


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, args.resolution, args.resolution)

    times, thinned = time_thinning(base, x, args)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(json.dumps({"section": "a_thinning_time", "variant": name, "median_s": round(medians[name], 4),
                          "runs_s": [round(v, 4) for v in values]}))
    ratio = medians["distiller"] / medians["torch_pruning"]
    print(json.dumps({"section": "a_thinning_time", "ratio_distiller_over_torch_pruning": round(ratio, 3),
                      "target": "<= 1.0"}))

    models = {"dense": base, **thinned}
    macs = {name: model_macs(model, x) for name, model in models.items()}
    params = {name: model_params(model) for name, model in models.items()}
    batch = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        section = "b_cpu_latency" if device.type == "cpu" else "c_gpu_latency"
        latency, samples = time_latency(models, batch, args, device)
        for name in models:
            speedup, macs_cut = latency["dense"] / latency[name], macs["dense"] / macs[name]
            print(json.dumps({"section": section, "variant": name, "batch": args.batch_size,
                              "median_ms": round(latency[name], 1), "runs_ms": [round(v, 1) for v in samples[name]],
                              "macs": macs[name], "params": params[name], "speedup": round(speedup, 3),
                              "macs_reduction": round(macs_cut, 3),
                              "speedup_over_macs_reduction": round(speedup / macs_cut, 3)}))
    if len(devices) == 1:
        print(json.dumps({"section": "c_gpu_latency", "skipped": "CUDA is not available"}))
    print(json.dumps({"summary": "bench_thinning", "machine": machine(), "args": vars(args)}))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
