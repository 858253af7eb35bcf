#!/usr/bin/env python3
"""Compress a small BERT-style encoder on a generated text-classification task.

Steps, each evaluated on the same test set: train the dense model; prune attention heads (and optionally FFN
neurons) with a YAML schedule while fine-tuning, then remove them physically (``thin_transformer``); the same
with knowledge distillation from the dense model; 8-bit post-training quantization of the dense and thinned
models; CPU latency of dense, thinned and PyTorch's own fused encoder, measured interleaved (medians).

Usage (from the repository root)::

    python examples/transformers/compress_encoder.py --compress examples/transformers/head_pruning.yaml
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from typing import Any, Optional

import torch
from torch import nn

import distiller
from distiller.apputils.app_runner import report_results
from distiller.quantization import PostTrainLinearQuantizer
from distiller.testing import train_with_scheduler
from distiller.transformers import thin_transformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_task import BertStyleClassifier, make_topic_task  # noqa: E402

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compress", required=True, help="YAML schedule of the pruning fine-tune")
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=6, help="epochs of pruning + fine-tuning")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--test-samples", type=int, default=1000)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("-b", "--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (fine-tuning: half of it)")
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--latency-batch", type=int, default=32)
    parser.add_argument("--latency-repeats", type=int, default=50, help="0: skip the latency measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON to this file")
    return parser


def batches_of(ids: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Batches:
    return list(zip(ids.split(batch_size), labels.split(batch_size)))


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = sum(int((model(ids).argmax(dim=1) == labels).sum()) for ids, labels in batches)
    return 100.0 * correct / sum(len(labels) for _, labels in batches)


def train(model: nn.Module, batches: Batches, epochs: int, lr: float,
          scheduler: Optional[distiller.CompressionScheduler] = None,
          optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    model.train()
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs)


def prune_and_thin(dense: nn.Module, args: argparse.Namespace, batches: Batches, test_batches: Batches,
                   teacher: Optional[nn.Module] = None) -> tuple[nn.Module, float, dict[str, Any]]:
    """Fine-tunes a copy of ``dense`` under the schedule (with KD from ``teacher`` if given), then thins it.
    Returns the thinned model, the masked model's accuracy and what was removed."""
    model = copy.deepcopy(dense)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr / 2)
    scheduler = distiller.file_config(model, optimizer, args.compress)
    if teacher is not None:
        kd = distiller.KnowledgeDistillationPolicy(model, teacher, temperature=args.kd_temperature,
                                                   loss_weights={"distill": 0.7, "student": 0.3, "teacher": 0.0})
        scheduler.add_policy(kd, epochs=list(range(args.prune_epochs)))
    train(model, batches, args.prune_epochs, args.lr / 2, scheduler, optimizer)
    masked_top1 = evaluate(model, test_batches)
    removed = thin_transformer(model, optimizer, scheduler.zeros_mask_dict)
    return model, masked_top1, {kind: {name: len(ids) for name, ids in r.items()} for kind, r in removed.items()}


def quantized(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An 8-bit post-training-quantized copy (weights and activations, dynamic ranges)."""
    model = copy.deepcopy(model).eval()
    PostTrainLinearQuantizer(model, bits_activations=8, bits_parameters=8).prepare_model(example)
    return model


@torch.no_grad()
def latencies(models: dict[str, nn.Module], ids: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median milliseconds per batch of each model, timed interleaved (one call of each per round)."""
    for model in models.values():
        model.eval()(ids)                                                   # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(ids)
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    task = dict(seq_len=args.seq_len)
    train_batches = batches_of(*make_topic_task(args.train_samples, seed=args.seed, **task), args.batch_size)
    test_batches = batches_of(*make_topic_task(args.test_samples, seed=args.seed + 1, **task), 256)
    arch = dict(dim=args.dim, heads=args.heads, ffn=args.ffn, layers=args.layers, max_len=args.seq_len)
    dense = BertStyleClassifier(**arch)
    train(dense, train_batches, args.epochs, args.lr)
    results: dict[str, Any] = {"dense_top1": evaluate(dense, test_batches), "dense_params": params(dense)}

    thinned, masked_top1, removed = prune_and_thin(dense, args, train_batches, test_batches)
    results.update(pruned_masked_top1=masked_top1, removed=removed)
    results["thinned_top1"], results["thinned_params"] = evaluate(thinned, test_batches), params(thinned)
    kd_thinned, _, _ = prune_and_thin(dense, args, train_batches, test_batches, teacher=dense)
    results["kd_thinned_top1"] = evaluate(kd_thinned, test_batches)

    example = test_batches[0][0][:1]
    results["dense_int8_top1"] = evaluate(quantized(dense, example), test_batches)
    results["thinned_int8_top1"] = evaluate(quantized(thinned, example), test_batches)

    if args.latency_repeats:
        fused = BertStyleClassifier(**arch, convert=False).eval()           # PyTorch's fused inference path
        ids = test_batches[0][0][:args.latency_batch]
        ms = latencies({"dense": dense, "thinned": thinned, "torch_fused_dense": fused}, ids, args.latency_repeats)
        results["latency_ms"] = ms
        results["speedup_thinned_vs_dense"] = ms["dense"] / ms["thinned"]
        results["latency_threads"] = torch.get_num_threads()
    report_results(results, args, args.out)
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
