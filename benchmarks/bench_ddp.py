"""Distributed training throughput on the CPU: 2 gloo processes (DistributedDataParallel) vs 1 process.

Both variants train resnet20_cifar on the same batches of digits (32x32) at the same global batch, through the
classifier engine's pieces: :class:`~distiller.apputils.training_module.TrainingModule` (DDP in the 2-process
variant), :func:`~distiller.apputils.classifier_loop.train_one_epoch` with a CompressionScheduler that holds AGP
masks at ``--sparsity`` (re-applied after every step; with 2 processes the mask broadcast hook is installed as
the application installs it) and each process reading its half of every global batch. They share the
machine's cores: ``--cores`` intra-op threads for the 1-process variant, half of them per process for the
2-process one.

Runs are interleaved (1 process, 2 processes, 1 process, ...); each run times ``--steps`` steps after
``--warmup`` untimed ones. Prints one JSON object per variant (median images/s over the repeats), then a summary
with the speedup of 2 processes over 1 and the machine, including its load average.

Example::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_ddp.py --steps 20 --repeats 5 --cores 2
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch
import torch.distributed as dist

import distiller
from distiller.apputils.classifier_loop import train_one_epoch
from distiller.apputils.data_loaders import digits_tensors
from distiller.apputils.distributed import MaskBroadcaster, init_from_env
from distiller.apputils.training_module import TrainingModule
from distiller.models import create_model
from distiller.testing.distributed import run_in_gloo_processes


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet20_cifar")
    parser.add_argument("--batch-size", type=int, default=128, help="global mini-batch (split among processes)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run before timing")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--sparsity", type=float, default=0.7, help="AGP final sparsity of the masks held")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores shared by the variants")
    return parser


def _scheduler(model, sparsity):
    """AGP on every conv/linear weight, masks already at ``sparsity`` in epoch 0."""
    weights = [name for name, param in model.named_parameters() if param.dim() in (2, 4)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    schedule = {"version": 1,
                "pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": sparsity,
                                    "final_sparsity": sparsity, "weights": weights}},
                "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 2,
                              "frequency": 1}]}
    return distiller.config.dict_config(model, optimizer, schedule), optimizer


def _run(rank, world_size, args, out_path):
    """One process of one variant: trains warmup + steps global batches, rank 0 writes images/s."""
    torch.set_num_threads(max(1, args.cores // world_size))
    distributed = world_size > 1
    if distributed:
        init_from_env(use_cuda=False)
    torch.manual_seed(0)
    model = create_model(False, "digits", args.arch, device_ids=-1)
    scheduler, optimizer = _scheduler(model, args.sparsity)
    if distributed:
        scheduler.mask_sync = MaskBroadcaster()
    images, labels = digits_tensors()[:2]
    local = args.batch_size // world_size
    batches = [(images[start + rank * local:start + (rank + 1) * local],
                labels[start + rank * local:start + (rank + 1) * local])
               for start in range(0, (args.warmup + args.steps) * args.batch_size, args.batch_size)]
    if len(batches[-1][0]) < local:
        raise SystemExit(f"--steps {args.steps} --batch-size {args.batch_size}: more images than digits has")
    training = TrainingModule(model, distributed=distributed)
    criterion = torch.nn.CrossEntropyLoss()
    scheduler.on_epoch_begin(0, optimizer)
    train_one_epoch(training(), criterion, optimizer, batches[:args.warmup], 0, scheduler, print_freq=10 ** 6)
    if distributed:
        dist.barrier()
    start = time.perf_counter()
    train_one_epoch(training(), criterion, optimizer, batches[args.warmup:], 0, scheduler, print_freq=10 ** 6)
    if distributed:
        dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"images_per_s": args.steps * args.batch_size / seconds, "step_s": seconds / args.steps}, f)


def main(args):
    results = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "result.json")
        for _ in range(args.repeats):
            for processes in (1, 2):
                run_in_gloo_processes(_run, processes, args, out_path)
                with open(out_path) as f:
                    results[processes].append(json.load(f))
    medians = {}
    for processes, runs in results.items():
        medians[processes] = statistics.median(r["images_per_s"] for r in runs)
        print(json.dumps({"variant": f"{processes}_process" + ("es" if processes > 1 else ""),
                          "threads_per_process": max(1, args.cores // processes), "global_batch": args.batch_size,
                          "images_per_s_median": round(medians[processes], 1),
                          "step_ms_median": round(1e3 * statistics.median(r["step_s"] for r in runs), 2),
                          "images_per_s_runs": [round(r["images_per_s"], 1) for r in runs]}))
    print(json.dumps({"summary": "ddp_cpu", "arch": args.arch, "speedup_2_over_1": round(medians[2] / medians[1], 3),
                      "torch": torch.__version__, "cpus": os.cpu_count(), "cores_used": args.cores,
                      "machine": platform.processor() or platform.machine(),
                      "load_average": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
