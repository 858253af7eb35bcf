#!/usr/bin/env python3
"""The communication a distributed compression run adds at 8, 64 and 512 GPUs, from a model of the step time.

Prints the table quoted in ``docs-src/scale.md``: for data-parallel AGP filter pruning of ResNet-50 on ImageNet,
the bytes each GPU sends per step and per epoch for DistributedDataParallel itself and for the collectives that
keep the compression decisions identical (:mod:`distiller.apputils.distributed`), and the time those take next
to the epoch's. The model's sizes are counted on torchvision's ResNet-50 (built on the meta device); the
hardware is a parameter (defaults: an H100/H200-class node of 8 GPUs with NVLink, 400 Gb/s InfiniBand per GPU
between nodes)::

    python tools/scale_model.py
    python tools/scale_model.py --images-per-second 1200 --network-gbytes 25

Collective times follow the usual alpha-beta model: a ring all-reduce of ``S`` bytes sends ``2 (N-1)/N S``
bytes per GPU, a pipelined broadcast ``S``; each adds a latency of ``alpha log2 N`` (two for an all-reduce).
"""
# (no "from __future__ import annotations": the docs test imports this file without registering it as a module,
# where dataclasses cannot resolve string annotations)
import argparse
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torchvision

IMAGENET_TRAIN_IMAGES = 1_281_167


@dataclass(frozen=True)
class ModelSizes:
    """What the collectives carry, counted on the model."""
    params: int             # parameters (DDP all-reduces one gradient each)
    masked: int             # elements of the pruned weights (every convolution's)
    buffer_bytes: int       # BatchNorm statistics (broadcast by DDP every step, by the engine every epoch)
    manifest_bytes: int     # the pickled (name, shape, mask) list broadcast before the masks
    ranked_channels: int    # output channels of the pruned convolutions (activation statistics: one sum each)
    ranked_layers: int


def resnet50_sizes() -> ModelSizes:
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    conv_weights = {id(m.weight) for m in convs}
    manifest = [(name, tuple(p.shape), (tuple(p.shape), "torch.bool") if id(p) in conv_weights else None)
                for name, p in model.named_parameters()]
    return ModelSizes(params=sum(p.numel() for p in model.parameters()),
                      masked=sum(m.weight.numel() for m in convs),
                      buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
                      manifest_bytes=len(pickle.dumps(manifest)) + 8,  # + the size message
                      ranked_channels=sum(m.out_channels for m in convs), ranked_layers=len(convs))


@dataclass(frozen=True)
class Network:
    bandwidth: float  # bytes/s per GPU
    latency: float    # s per hop

    def all_reduce(self, size: float, gpus: int) -> tuple[float, float]:
        """(bytes sent per GPU, seconds) of a ring all-reduce of ``size`` bytes."""
        sent = 2 * (gpus - 1) / gpus * size
        return sent, sent / self.bandwidth + 2 * self.latency * math.log2(gpus)

    def broadcast(self, size: float, gpus: int) -> tuple[float, float]:
        """(bytes received per GPU, seconds) of a pipelined broadcast of ``size`` bytes."""
        return size, size / self.bandwidth + self.latency * math.log2(gpus)


def _total(collectives: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(bytes, seconds) of collectives run one after the other."""
    return sum(b for b, _ in collectives), sum(t for _, t in collectives)


def scale_rows(sizes: ModelSizes, args: argparse.Namespace) -> list[dict[str, float]]:
    """One row per GPU count: steps, step time and the bytes/seconds of every collective."""
    rows = []
    for gpus in args.gpus:
        intra = gpus <= args.gpus_per_node
        net = Network((args.nvlink_gbytes if intra else args.network_gbytes) * 1e9,
                      (args.nvlink_latency_us if intra else args.network_latency_us) * 1e-6)
        steps = math.ceil(IMAGENET_TRAIN_IMAGES / (args.batch_per_gpu * gpus))
        compute = args.batch_per_gpu / args.images_per_second
        grad_bytes, grad_time = net.all_reduce(sizes.params * args.gradient_bytes, gpus)
        ddp_buffers, ddp_buffers_time = net.broadcast(sizes.buffer_bytes, gpus)
        # Per mask update: manifest, the 'diverged?' flag, then masks (bool) and masked fp32 weights.
        update = _total([net.broadcast(sizes.manifest_bytes, gpus), net.all_reduce(8, gpus),
                         net.broadcast(sizes.masked * (args.mask_bytes + args.weight_bytes), gpus)])
        # Per epoch: the buffers once more, the validation scores (4 float64).
        epoch = _total([net.broadcast(sizes.buffer_bytes, gpus), net.all_reduce(32, gpus)])
        # Per activation ranking (activation-ranked pruners only): per ranked layer, the 'seen' flag and count,
        # then one float32 sum per channel.
        channels = sizes.ranked_channels / sizes.ranked_layers
        ranking = _total([net.all_reduce(16, gpus), net.all_reduce(4 * channels, gpus)] * sizes.ranked_layers)
        step = compute + grad_time + ddp_buffers_time  # DDP's all-reduce is not overlapped here: an upper bound
        added = args.mask_updates_per_epoch * (update[1] + ranking[1]) + epoch[1]
        rows.append({"gpus": gpus, "steps": steps, "step_ms": 1e3 * step, "grad_mb": grad_bytes / 1e6,
                     "buffers_kb": ddp_buffers / 1e3, "update_mb": update[0] / 1e6, "update_ms": 1e3 * update[1],
                     "epoch_kb": epoch[0] / 1e3, "epoch_ms": 1e3 * epoch[1], "ranking_kb": ranking[0] / 1e3,
                     "ranking_ms": 1e3 * ranking[1], "share": 100 * added / (steps * step + added)})
    return rows


def markdown_table(rows: Sequence[dict[str, float]]) -> str:
    lines = ["| GPUs | steps/epoch | step (ms) | DDP gradients/step (MB) | DDP buffers/step (kB) | "
             "mask update (MB / ms) | end of epoch (kB / ms) | activation ranking (kB / ms) | "
             "compression share of epoch |", "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['gpus']} | {r['steps']} | {r['step_ms']:.1f} | {r['grad_mb']:.1f} | "
                     f"{r['buffers_kb']:.1f} | {r['update_mb']:.1f} / {r['update_ms']:.2f} | "
                     f"{r['epoch_kb']:.1f} / {r['epoch_ms']:.3f} | {r['ranking_kb']:.1f} / {r['ranking_ms']:.2f} | "
                     f"{r['share']:.2f}% |")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--batch-per-gpu", type=int, default=256)
    parser.add_argument("--images-per-second", type=float, default=2500.0,
                        help="training throughput of one GPU (ResNet-50, bf16): the compute part of a step")
    parser.add_argument("--nvlink-gbytes", type=float, default=400.0, help="GB/s per GPU inside a node")
    parser.add_argument("--network-gbytes", type=float, default=50.0, help="GB/s per GPU between nodes")
    parser.add_argument("--nvlink-latency-us", type=float, default=10.0)
    parser.add_argument("--network-latency-us", type=float, default=30.0)
    parser.add_argument("--gradient-bytes", type=int, default=4, help="bytes per gradient element (fp32)")
    parser.add_argument("--weight-bytes", type=int, default=4, help="bytes per weight element (fp32)")
    parser.add_argument("--mask-bytes", type=float, default=1.0, help="bytes per mask element (bool)")
    parser.add_argument("--mask-updates-per-epoch", type=int, default=1,
                        help="mask updates (and activation rankings) per epoch: AGP with frequency 1 epoch")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = get_args_parser().parse_args(argv)
    sizes = resnet50_sizes()
    table = markdown_table(scale_rows(sizes, args))
    print(f"ResNet-50: {sizes.params:,} parameters, {sizes.masked:,} pruned conv weights, "
          f"{sizes.buffer_bytes:,} buffer bytes, {sizes.manifest_bytes:,} manifest bytes, "
          f"{sizes.ranked_channels:,} ranked channels in {sizes.ranked_layers} layers")
    print(table)
    return table


if __name__ == "__main__":
    main()
