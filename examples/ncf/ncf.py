#!/usr/bin/env python3
"""Neural Collaborative Filtering (NeuMF) with post-training quantization of its embeddings and MLP, evaluated by
hit rate and NDCG at 10 with the leave-one-out protocol (He et al., WWW 2017).

From the repository root (see README.md beside this file for the measured results)::

    python examples/ncf/ncf.py -n ncf --quantize-eval                # generated implicit feedback
    python examples/ncf/ncf.py --data ml-1m -n ncf_ml1m --quantize-eval  # MovieLens-1M's ratings.dat

A ranked item ties with the held-out item count against it (a pessimistic rank), so a quantized model whose
scores collide is not credited for the collision.
"""
import argparse
import logging
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import distiller
from distiller.apputils import sequence_app as app
from distiller.apputils.app_runner import run_cli
from distiller.cli.common import ArgumentParser, positive_int
from distiller.errors import CheckpointError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncf_data import (LeaveOneOut, generate_interactions, leave_one_out, read_movielens_ratings,  # noqa: E402
                      test_candidates, training_instances)
from ncf_model import NeuMF  # noqa: E402

msglogger = logging.getLogger(__name__)
ARCH = "neumf"
TOP_K = 10
#: ``(users, items, labels)`` of one mini-batch.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def get_args_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description="NeuMF recommendation with post-training quantization")
    app.add_sequence_app_args(parser, epochs=8, lr=1e-3, batch_size=256)
    group = parser.add_argument_group("NCF arguments")
    group.add_argument("--factors", type=positive_int, default=8, help="GMF predictive factors (default: 8)")
    group.add_argument("--mlp-layers", type=positive_int, nargs="+", default=[64, 32, 16, 8],
                       help="MLP widths, the first split between user and item (default: 64 32 16 8)")
    group.add_argument("--no-split-final", dest="split_final", action="store_false",
                       help="one final linear layer over [GMF; MLP] (the paper's) instead of one per branch, added")
    group.add_argument("--num-neg", type=positive_int, default=4, help="negatives per training positive")
    group.add_argument("--num-users", type=positive_int, default=1000, help="generated data: users (default 1000)")
    group.add_argument("--num-items", type=positive_int, default=800, help="generated data: items (default 800)")
    group.add_argument("--per-user", type=positive_int, default=40,
                       help="generated data: interactions per user (default 40)")
    return parser


@dataclass
class Setup:
    split: LeaveOneOut
    model: NeuMF
    model_args: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: distiller.CompressionScheduler


def ranking_metrics(scores: torch.Tensor, k: int = TOP_K) -> dict[str, float]:
    """HR@k and NDCG@k of ``scores`` ``[users, candidates]`` whose column 0 is each user's held-out item.

    The held-out item's rank counts the candidates scoring at least as high (ties count against it).
    """
    rank = (scores[:, 1:] >= scores[:, :1]).sum(dim=1).double()
    hit = rank < k
    ndcg = torch.where(hit, math.log(2) / torch.log(rank + 2), torch.zeros_like(rank))
    return {"hr": float(hit.double().mean()), "ndcg": float(ndcg.mean())}


def evaluate(model: nn.Module, split: LeaveOneOut, chunk: int = 50_000) -> dict[str, float]:
    """HR@10 and NDCG@10 over all users' held-out items."""
    model.eval()
    users, items = test_candidates(split)
    flat_users, flat_items = users.reshape(-1), items.reshape(-1)
    with torch.no_grad():
        scores = torch.cat([model(flat_users[i:i + chunk], flat_items[i:i + chunk])
                            for i in range(0, flat_users.numel(), chunk)])
    return ranking_metrics(scores.view(users.shape))


def batches_of(instances: Batch, batch_size: int) -> list[Batch]:
    users, items, labels = instances
    return [(users[i:i + batch_size], items[i:i + batch_size], labels[i:i + batch_size])
            for i in range(0, users.numel(), batch_size)]


def bce_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    users, items, labels = batch
    return F.binary_cross_entropy_with_logits(model(users, items), labels)


def setup(args: argparse.Namespace) -> Setup:
    """Reads or generates the interactions, splits them, builds (or loads) the model, optimizer and schedule."""
    torch.manual_seed(args.seed)
    data = (read_movielens_ratings(args.data) if args.data else
            generate_interactions(args.num_users, args.num_items, args.per_user, args.seed))
    split = leave_one_out(data, args.seed)
    msglogger.info("%d users, %d items, %d training interactions", split.num_users, split.num_items,
                   len(split.train_users))
    model_args = dict(num_users=split.num_users, num_items=split.num_items, factors=args.factors,
                      mlp_layers=list(args.mlp_layers), split_final=args.split_final)
    if args.load:
        saved = app.read_model_checkpoint(args.load, ARCH, {})
        if (saved["num_users"], saved["num_items"]) != (split.num_users, split.num_items):
            raise CheckpointError(f"'{args.load}' was trained on {saved['num_users']} users and {saved['num_items']} "
                                  f"items, this data has {split.num_users} and {split.num_items}: use the data it "
                                  f"was trained on")
        model_args = saved
    model, optimizer, scheduler = app.prepare_model(NeuMF, model_args, args,
                                                    lambda params: torch.optim.Adam(params, lr=args.lr))
    return Setup(split, model, model_args, optimizer, scheduler)


def run(args: argparse.Namespace, s: Setup, run_dir: str) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    history = []
    for epoch in range(args.epochs):
        batches = batches_of(training_instances(s.split, args.num_neg, rng), args.batch_size)
        loss = app.train_one_epoch(s.model, batches, bce_loss, s.optimizer, epoch, s.scheduler)
        result = evaluate(s.model, s.split)
        msglogger.info("Epoch %d: train loss %.4f | HR@%d %.4f NDCG@%d %.4f", epoch, loss, TOP_K, result["hr"],
                       TOP_K, result["ndcg"])
        history.append({"epoch": epoch, "train_loss": loss, **result})
        app.save_model(run_dir, ARCH, s.model, epoch, s.model_args, {}, s.scheduler)
    result = evaluate(s.model, s.split)
    summary: dict[str, Any] = {"epochs": history, "hr": result["hr"], "ndcg": result["ndcg"],
                               "sparsity": app.weight_sparsity(s.model)}
    msglogger.info("Test: HR@%d %.4f NDCG@%d %.4f", TOP_K, result["hr"], TOP_K, result["ndcg"])
    if args.quantize_eval:
        calibration_rng = np.random.default_rng(args.seed + 1)
        batches = batches_of(training_instances(s.split, args.num_neg, calibration_rng), args.batch_size)
        calibration = batches[:max(1, math.ceil((args.qe_calibration or 0.1) * len(batches)))]

        def calibrate(model: nn.Module) -> None:
            model.eval()
            with torch.no_grad():
                for users, items, _ in calibration:
                    model(users, items)

        app.quantize_post_training(s.model, args, calibrate, calibration[0][:2], run_dir)
        quantized = evaluate(s.model, s.split)
        summary.update(quantized_hr=quantized["hr"], quantized_ndcg=quantized["ndcg"],
                       quantized_hr_change=quantized["hr"] - result["hr"])
        msglogger.info("Quantized test: HR@%d %.4f (%+.4f) NDCG@%d %.4f", TOP_K, quantized["hr"],
                       summary["quantized_hr_change"], TOP_K, quantized["ndcg"])
    return summary


def main(args: argparse.Namespace) -> dict[str, Any]:
    return app.run_app(args, lambda: setup(args), lambda s, run_dir: run(args, s, run_dir))


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
