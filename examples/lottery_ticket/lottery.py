#!/usr/bin/env python3
"""Lottery-ticket retraining: the masks of a pruned network put back onto its initial weights, then trained
(Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks", ICLR 2019).

Three steps, from the repository root (see README.md beside this file for the measured results)::

    # 1. train and prune, keeping the initial weights (<run dir>/untrained_checkpoint.pth.tar)
    python examples/classifier_compression/compress_classifier.py -a resnet20_cifar --epochs 20 --det \\
        --save-untrained-model --compress examples/agp-pruning/resnet20_digits.schedule_agp.yaml
    # 2. retrain the initial weights under the pruned network's masks
    python examples/lottery_ticket/lottery.py --lt-untrained-ckpt UNTRAINED --lt-pruned-ckpt PRUNED --epochs 20 --det

The masks stay fixed during retraining: the compression scheduler holds them without any pruning policy and
masks the weights again after every optimizer step. ``--compress`` may add a learning-rate schedule.
``--lt-random-init`` trains the same masks on a fresh random initialisation instead (the paper's control).
The work is done by the library's engine (``distiller.apputils.image_classifier.ClassifierCompressor``).
"""
import argparse
import os
from typing import Any, Optional

import torch

from distiller.apputils import read_checkpoint
from distiller.apputils.app_runner import progress_logging, run_cli
from distiller.apputils.image_classifier import ClassifierCompressor, init_classifier_compression_arg_parser
from distiller.errors import ArgumentError, CheckpointError


def get_args_parser() -> argparse.ArgumentParser:
    """The classifier app's command line plus the lottery-ticket checkpoints (``--lt-*``)."""
    parser = init_classifier_compression_arg_parser()
    group = parser.add_argument_group("Lottery ticket arguments")
    group.add_argument("--lt-untrained-ckpt", required=True, metavar="PATH",
                       help="the network's initial weights (untrained_checkpoint.pth.tar of a run with "
                            "--save-untrained-model)")
    group.add_argument("--lt-pruned-ckpt", required=True, metavar="PATH",
                       help="the pruned network whose masks (its compression scheduler's) are applied")
    group.add_argument("--lt-random-init", action="store_true",
                       help="apply the masks to a new random initialisation (--seed) instead of the initial weights")
    return parser


def check_same_network(untrained_path: str, untrained: dict[str, Any], pruned_path: str,
                       pruned: dict[str, Any]) -> None:
    """Refuses two checkpoints of different architectures or parameter shapes.

    Raises:
        CheckpointError: naming both files and the first difference.
    """
    both = f"'{untrained_path}' and '{pruned_path}'"
    if untrained.get("arch") != pruned.get("arch"):
        raise CheckpointError(f"{both} hold different architectures ({untrained.get('arch')} vs "
                              f"{pruned.get('arch')}): the masks must come from a pruned copy of the same network")
    shapes = [{name: tuple(t.shape) for name, t in c["state_dict"].items()} for c in (untrained, pruned)]
    if shapes[0] != shapes[1]:
        name = next(n for n in sorted(shapes[0].keys() | shapes[1].keys()) if shapes[0].get(n) != shapes[1].get(n))
        raise CheckpointError(f"{both} hold networks of different shapes (first difference: '{name}' "
                              f"{shapes[0].get(name)} vs {shapes[1].get(name)}): was one of them thinned?")


def pruned_masks(path: str, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The masks of the pruned checkpoint's compression scheduler.

    Raises:
        CheckpointError: the checkpoint holds no mask.
    """
    masks = (checkpoint.get("compression_sched") or {}).get("masks_dict") or {}
    masks = {name: mask for name, mask in masks.items() if mask is not None}
    if not masks:
        raise CheckpointError(f"'{path}' holds no pruning masks: pass the checkpoint of a pruned run "
                              "(e.g. its checkpoint.pth.tar or best.pth.tar)")
    return masks


def _check_args(args: argparse.Namespace) -> None:
    for flag, given in (("--resume-from", args.resume_from), ("--exp-load-weights-from", args.exp_load_weights_from),
                        ("--evaluate", args.evaluate), ("--greedy", args.greedy)):
        if given:
            raise ArgumentError(f"{flag} does not combine with the lottery ticket: the weights come from "
                                "--lt-untrained-ckpt (or --lt-random-init), the masks from --lt-pruned-ckpt")


def _same_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> bool:
    own = {name.removeprefix("module."): t for name, t in model.state_dict().items()}
    return all(torch.equal(own[name].cpu(), t) for name, t in state_dict.items() if name.endswith("weight"))


def main(args: argparse.Namespace) -> Optional[dict[str, Any]]:
    """Retrains the masked initial (or random) weights with the run's schedule; returns the run's summary."""
    _check_args(args)
    untrained, pruned = read_checkpoint(args.lt_untrained_ckpt), read_checkpoint(args.lt_pruned_ckpt)
    check_same_network(args.lt_untrained_ckpt, untrained, args.lt_pruned_ckpt, pruned)
    masks = pruned_masks(args.lt_pruned_ckpt, pruned)
    args.arch = args.arch or untrained.get("arch")
    if not args.lt_random_init:
        args.exp_load_weights_from = args.lt_untrained_ckpt
    app = ClassifierCompressor(args, script_dir=os.path.dirname(os.path.abspath(__file__)))
    with app, progress_logging():
        if args.lt_random_init and _same_weights(app.model, untrained["state_dict"]):
            raise ArgumentError(f"--lt-random-init: --seed {app.experiment.seed} gives the very weights of "
                                f"'{args.lt_untrained_ckpt}'; pick another --seed")
        app.compression_scheduler.init_from_masks_dict(masks)
        app.compression_scheduler.mask_all_weights()
        app.run_training_loop()
        summary = app.summary(app.test())
        summary["lottery"] = {"untrained_checkpoint": args.lt_untrained_ckpt,
                              "pruned_checkpoint": args.lt_pruned_ckpt, "random_init": args.lt_random_init,
                              "masked_parameters": len(masks)}
        return app.write_summary(summary)


if __name__ == "__main__":
    raise SystemExit(run_cli(main, get_args_parser()))
