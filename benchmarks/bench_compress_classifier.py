"""Epoch time of the classifier sample application with a compression schedule vs without one.

Builds two experiments in one process with the application's own code
(examples/classifier_compression): the same architecture, data and initial weights, one with an empty
compression scheduler (what the app runs without ``--compress``) and one with the given schedule
(default: the README's AGP quick-start schedule). Then trains them epoch by epoch, interleaved in
ABBA order to cancel drifts in machine load, timing the whole epoch as the app runs it:
``on_epoch_begin`` (where AGP computes masks), ``train_one_epoch`` (six callbacks per mini-batch, masks
re-applied after each step) and ``on_epoch_end``.

Prints one JSON line per timed epoch and a summary line with the median wall-clock and CPU-time ratios
(schedule / no schedule) and the machine.

Example::

    python benchmarks/bench_compress_classifier.py --epochs 1 2 3 4
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch

from distiller.apputils.classifier_loop import train_one_epoch
from distiller.apputils.classifier_reports import weight_statistics
from distiller.apputils.classifier_setup import build_experiment
from distiller.apputils.image_classifier import init_classifier_compression_arg_parser

DEFAULT_SCHEDULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "agp-pruning",
                                "resnet20_digits.schedule_agp.yaml")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet20_cifar")
    parser.add_argument("--schedule", default=DEFAULT_SCHEDULE)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="epochs to time (choose epochs in which the schedule prunes)")
    parser.add_argument("-b", "--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser


def build(args, schedule):
    # --epochs only matters to the app's check that the schedule fits: the benchmark times single epochs.
    argv = ["-a", args.arch, "-b", str(args.batch_size), "--seed", "0", "--epochs", "10000"]
    parser = init_classifier_compression_arg_parser()
    app_args = parser.parse_args(argv + (["--compress", schedule] if schedule else []))
    return build_experiment(app_args)


def timed_epoch(exp, epoch):
    """Runs one training epoch as the app does; returns (wall seconds, CPU seconds)."""
    exp.train_loader.sampler.set_epoch(epoch)
    start, start_cpu = time.perf_counter(), time.process_time()
    exp.scheduler.on_epoch_begin(epoch, exp.optimizer)
    train_one_epoch(exp.model, torch.nn.CrossEntropyLoss(), exp.optimizer, exp.train_loader, epoch, exp.scheduler,
                    loggers=[], print_freq=10 ** 9)
    exp.scheduler.on_epoch_end(epoch, exp.optimizer, metrics={"min": 0.0, "max": 0.0})
    return time.perf_counter() - start, time.process_time() - start_cpu


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = {"no_schedule": build(args, None), "schedule": build(args, args.schedule)}
    times = {name: [] for name in variants}
    for index, epoch in enumerate(args.epochs):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            wall, cpu = timed_epoch(variants[name], epoch)
            times[name].append((wall, cpu))
            print(json.dumps({"variant": name, "epoch": epoch, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}),
                  flush=True)
    medians = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
               for name, t in times.items()}
    print(json.dumps({
        "benchmark": "compress_classifier_epoch_time", "arch": args.arch, "dataset": "digits",
        "schedule": os.path.relpath(args.schedule), "batch_size": args.batch_size, "epochs": args.epochs,
        "median_wall_s": {name: round(m[0], 3) for name, m in medians.items()},
        "median_cpu_s": {name: round(m[1], 3) for name, m in medians.items()},
        "wall_ratio": round(medians["schedule"][0] / medians["no_schedule"][0], 4),
        "cpu_ratio": round(medians["schedule"][1] / medians["no_schedule"][1], 4),
        "weight_sparsity_percent_after": {name: round(weight_statistics(exp.model)["sparsity"], 2)
                                          for name, exp in variants.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
    }))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
