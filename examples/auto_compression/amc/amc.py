#!/usr/bin/env python3
"""Automated Model Compression (AMC): a DDPG agent searches how far to prune each channel group of a
trained image classifier (He et al., ECCV 2018), with the physical pruning of distiller's thinning engine.

Search a ResNet-20 trained on the embedded ``digits`` dataset for half of its MACs, from the repository root::

    python examples/auto_compression/amc/amc.py -a resnet20_cifar --exp-load-weights-from best.pth.tar \\
        --amc-protocol mac-constrained --amc-target-density 0.5 --amc-heatup-episodes 10 \\
        --amc-training-episodes 30 -b 128 --vs 0.2 --det -n amc_resnet20

Protocols: ``mac-constrained`` (keep at most ``--amc-target-density`` of the MACs, reward = top-1),
``latency-constrained`` (keep at most ``--amc-target-latency`` of the latency measured on this machine at
``--amc-latency-batch-size``), ``accuracy-guaranteed`` (reward ``-error * log(MACs)``, no budget) and
``harmonic-mean`` (F1 of top-1 and MACs removed, no budget).

The run directory gets ``amc.csv`` (a row per episode), ``amc.png`` (reward and top-1 per episode),
``amc_best_checkpoint.pth.tar`` (the best network, thinned; it loads with ``--exp-load-weights-from``),
``latency_table.json`` (latency protocol) and ``amc_summary.json``; the log ends with the command that
fine-tunes the best network with ``compress_classifier.py``.
"""
import argparse
import itertools
import json
import logging
import os
import shlex
from typing import Any, Callable, Optional

import torch

from distiller.amc import REWARDS, AMCEnvironment, DDPGAgent, DDPGConfig, EpisodeRecord, EpisodeResult, amc_search
from distiller.amc.latency import TABLE_NAME, LatencyModel, batched, load_or_build_latency_table, measure_latency
from distiller.apputils.app_runner import progress_logging, run_cli
from distiller.apputils.checkpoint import save_checkpoint
from distiller.apputils.classifier_loop import evaluate
from distiller.apputils.image_classifier import ClassifierCompressor, init_classifier_compression_arg_parser
from distiller.cli.common import fraction, non_negative_int, positive_int
from distiller.errors import ArgumentError
from distiller.scheduler import CompressionScheduler
from distiller.utils import model_device

PROTOCOLS = ("mac-constrained", "latency-constrained", "accuracy-guaranteed", "harmonic-mean")
BEST_NAME = "amc_best"
SUMMARY_NAME = "amc_summary.json"
msglogger = logging.getLogger("amc")
CLASSIFIER_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "classifier_compression",
                              "compress_classifier.py")


def add_amc_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``--amc-*`` flags."""
    group = parser.add_argument_group("AMC")
    group.add_argument("--amc-protocol", choices=PROTOCOLS, default="mac-constrained",
                       help="what is budgeted and rewarded (default: mac-constrained)")
    group.add_argument("--amc-target-density", type=fraction(False, False), default=0.5,
                       help="mac-constrained: the share of the dense MACs to keep at most (default: 0.5)")
    group.add_argument("--amc-target-latency", type=fraction(False, False), default=None,
                       help="latency-constrained: the share of the dense latency to keep at most, e.g. 0.5")
    group.add_argument("--amc-heatup-episodes", type=non_negative_int, default=10,
                       help="warm-up episodes with random actions (default: 10)")
    group.add_argument("--amc-training-episodes", type=non_negative_int, default=30,
                       help="episodes driven by the agent (default: 30)")
    group.add_argument("--amc-action-range", type=fraction(True, False), nargs=2, default=[0.0, 0.8],
                       metavar=("MIN", "MAX"), help="share of a group's channels one action removes (default: 0 0.8)")
    group.add_argument("--amc-bn-calibration-batches", type=non_negative_int, default=4, metavar="N",
                       help="re-estimate the BatchNorm statistics of each pruned network on N training batches "
                            "before evaluating it (Li et al., EagleEye, ECCV 2020; default: 4, 0 disables)")
    group.add_argument("--amc-ddpg-noise-sigma", type=float, default=0.5,
                       help="initial width of the exploration noise (default: 0.5)")
    group.add_argument("--amc-ddpg-noise-decay", type=fraction(False, True), default=0.95,
                       help="factor of the noise width per training episode (default: 0.95)")
    group.add_argument("--amc-ddpg-batch-size", type=positive_int, default=64,
                       help="transitions per agent update (default: 64)")
    group.add_argument("--amc-latency-batch-size", type=positive_int, default=None, metavar="N",
                       help="latency-constrained: batch size to time at (default: -b)")
    group.add_argument("--amc-latency-levels", type=positive_int, default=6, metavar="N",
                       help="latency-constrained: widths timed per layer dimension (default: 6)")
    group.add_argument("--amc-latency-table", default=None, metavar="PATH",
                       help="latency-constrained: reuse the latency_table.json of an earlier run on this machine")
    group.add_argument("--amc-ft-epochs", type=non_negative_int, default=10,
                       help="epochs of the printed fine-tuning command (default: 10)")
    group.add_argument("--amc-ft-lr", type=float, default=0.01,
                       help="learning rate of the printed fine-tuning command (default: 0.01)")
    return group


def get_args_parser() -> argparse.ArgumentParser:
    """The classifier command line with the ``--amc-*`` flags."""
    parser = init_classifier_compression_arg_parser()
    parser.description = "Automated Model Compression (AMC) of an image classifier"
    add_amc_args(parser)
    return parser


def check_amc_args(args: argparse.Namespace) -> None:
    """Refuses flag combinations AMC cannot run, before anything is built or written.

    Raises:
        ArgumentError: naming the flag and the fix.
    """
    if not (args.resume_from or args.exp_load_weights_from or args.pretrained):
        raise ArgumentError("AMC prunes a trained network: pass --exp-load-weights-from CHECKPOINT (or --resume-from, "
                            "or --pretrained)")
    for flag, given in (("--evaluate", args.evaluate), ("--compress", args.compress), ("--greedy", args.greedy),
                        ("--thinnify", args.thinnify), ("--quantize-eval", getattr(args, "quantize_eval", False))):
        if given:
            raise ArgumentError(f"{flag} does not apply to AMC (the app searches, then prints the fine-tuning "
                                f"command); drop {flag}")
    if args.validation_split == 0:
        raise ArgumentError("AMC ranks the pruned networks on the validation set: --validation-split must be > 0 "
                            "(e.g. --vs 0.2)")
    latency = args.amc_protocol == "latency-constrained"
    if latency and args.amc_target_latency is None:
        raise ArgumentError("--amc-protocol latency-constrained needs --amc-target-latency (e.g. 0.5)")
    if not latency and args.amc_target_latency is not None:
        raise ArgumentError("--amc-target-latency applies to --amc-protocol latency-constrained only")
    if args.amc_heatup_episodes + args.amc_training_episodes == 0:
        raise ArgumentError("AMC needs at least one episode: raise --amc-heatup-episodes or --amc-training-episodes")
    low, high = args.amc_action_range
    if low > high:
        raise ArgumentError(f"--amc-action-range: MIN {low:g} is above MAX {high:g}")


def _evaluation(app: ClassifierCompressor, args: argparse.Namespace
                ) -> tuple[Callable[[torch.nn.Module], tuple[float, float, float]],
                           Optional[Callable[[torch.nn.Module], None]]]:
    """``evaluate_fn`` (validation top-1, top-5, loss) and ``calibrate_fn`` (BatchNorm re-estimation)."""
    def evaluate_fn(network: torch.nn.Module) -> tuple[float, float, float]:
        scores = evaluate(network, app.criterion, app.val_loader)
        return scores["Top1"], scores["Top5"], scores["Loss"]

    def calibrate_fn(network: torch.nn.Module) -> None:
        batches = itertools.islice(app.train_loader, args.amc_bn_calibration_batches)
        torch.optim.swa_utils.update_bn(batches, network, device=model_device(network))
    return evaluate_fn, calibrate_fn if args.amc_bn_calibration_batches else None


def build_environment(app: ClassifierCompressor, args: argparse.Namespace) -> AMCEnvironment:
    """The environment of the protocol, with its budget (timing the latency table, or loading it)."""
    if app.earlyexit is not None:
        raise ArgumentError(f"AMC does not search early-exit networks ('{app.experiment.arch}'); use the "
                            "architecture without exits")
    evaluate_fn, calibrate_fn = _evaluation(app, args)
    protocol = args.amc_protocol
    env = AMCEnvironment(app.model, app.experiment.dummy_input, evaluate_fn, REWARDS[protocol],
                         target_density=args.amc_target_density if protocol == "mac-constrained" else None,
                         action_range=tuple(args.amc_action_range), calibrate_fn=calibrate_fn)
    if protocol == "latency-constrained":
        table = load_or_build_latency_table(
            os.path.join(app.logdir, TABLE_NAME), app.model, app.experiment.dummy_input, env.costs, env.narrowest(),
            args.amc_latency_batch_size or args.batch_size, args.amc_latency_levels, source=args.amc_latency_table)
        env.set_budget(args.amc_target_latency, LatencyModel(env.costs, table), cost_name="latency")
    return env


def _scheduler_for(network: torch.nn.Module, app: ClassifierCompressor, result: EpisodeResult) -> CompressionScheduler:
    """A scheduler recording the loaded checkpoint's transforms, then the episode's thinning."""
    scheduler = CompressionScheduler(network)
    for record in app.compression_scheduler.model_transforms + [result.recipe.to_record()]:
        scheduler.record_transform(record.pop("kind"), record)
    return scheduler


def finetune_command(app: ClassifierCompressor, args: argparse.Namespace, checkpoint: str) -> str:
    """The ``compress_classifier.py`` command that fine-tunes the saved best network."""
    exp = app.experiment
    argv = ["python", os.path.relpath(os.path.normpath(CLASSIFIER_APP)), "-a", exp.arch]
    argv += [args.data] if args.data else []
    argv += ["--dataset", exp.dataset, "--exp-load-weights-from", checkpoint, "--epochs", str(args.amc_ft_epochs),
             "--lr", f"{args.amc_ft_lr:g}", "-b", str(args.batch_size), "--vs", f"{args.validation_split:g}",
             "--seed", str(exp.seed), "-o", args.output_dir, "-n", f"{args.name or 'amc'}_finetuned"]
    argv += ["--det"] if args.deterministic else []
    argv += ["--cpu"] if args.cpu else []
    return shlex.join(argv)


def _latency_report(env: AMCEnvironment, best: EpisodeResult, app: ClassifierCompressor,
                    args: argparse.Namespace, rounds: int = 3) -> dict[str, float]:
    """Predicted and measured latency of the best network (seconds per batch), and both as fractions of the
    dense network's (predicted: from the table's dense measurement; measured: the best and the dense network
    timed alternately, ``rounds`` times each, the fastest of each kept, so a change of load hits both)."""
    inputs = batched(app.experiment.dummy_input, args.amc_latency_batch_size or args.batch_size)
    best_times, dense_times = [], []
    for _ in range(rounds):
        best_times.append(measure_latency(best.model.eval(), inputs, min_run_time=0.2))
        dense_times.append(measure_latency(app.model.eval(), inputs, min_run_time=0.2))
    measured, dense = min(best_times), min(dense_times)
    predicted_fraction = best.cost / env.cost_fn(env.deps.in_use)
    report = {"predicted_seconds": best.cost, "measured_seconds": measured, "dense_measured_seconds": dense,
              "prediction_error": best.cost / measured - 1, "predicted_latency_fraction": predicted_fraction,
              "measured_latency_fraction": measured / dense}
    msglogger.info("Latency of the best network at batch size %d: predicted %.3f ms (%.3f of the dense network), "
                   "measured %.3f ms (%.3f of the dense network's %.3f ms); prediction error %+.1f%%",
                   inputs.shape[0], 1e3 * best.cost, predicted_fraction, 1e3 * measured, measured / dense,
                   1e3 * dense, 100 * report["prediction_error"])
    return report


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the search; returns the summary written to ``amc_summary.json``."""
    check_amc_args(args)
    app = ClassifierCompressor(args, script_dir=os.path.dirname(os.path.abspath(__file__)))
    with app, progress_logging():
        env = build_environment(app, args)
        exp = app.experiment
        dense_top1 = env.evaluate_fn(app.model)[0]
        msglogger.info("AMC (%s): %d channel groups, dense MACs %s, dense validation top-1 %.2f", args.amc_protocol,
                 len(env.steps), f"{int(env.dense_macs):,}", dense_top1)
        agent = DDPGAgent(len(env.reset()[0]), env.action_range,
                          DDPGConfig(noise_sigma=args.amc_ddpg_noise_sigma, noise_decay=args.amc_ddpg_noise_decay,
                                     batch_size=args.amc_ddpg_batch_size), seed=exp.seed)
        checkpoint = os.path.join(app.logdir, f"{BEST_NAME}_checkpoint.pth.tar")

        def save_best(record: EpisodeRecord, result: EpisodeResult, is_best: bool) -> None:
            if is_best:
                save_checkpoint(0, exp.arch, result.model, scheduler=_scheduler_for(result.model, app, result),
                                name=BEST_NAME, dir=app.logdir,
                                extras={"seed": exp.seed, "dataset": exp.dataset, "amc_episode": record.episode,
                                        "amc_top1": record.top1, "amc_density": record.density})

        best, records = amc_search(env, agent, args.amc_heatup_episodes, args.amc_training_episodes,
                                   save_dir=app.logdir, on_episode=save_best)
        best_record = max(records, key=lambda r: r.reward)
        summary: dict[str, Any] = {
            "protocol": args.amc_protocol, "arch": exp.arch, "dataset": exp.dataset, "dense_top1": dense_top1,
            "dense_macs": env.dense_macs, "episodes": len(records), "best_episode": best_record.episode,
            "reward": best.reward, "top1": best.top1, "macs": best.macs, "density": best.density,
            "cost_fraction": best_record.cost_fraction, "actions": list(best.actions), "checkpoint": checkpoint,
            "run_dir": app.logdir}
        if args.amc_protocol == "latency-constrained":
            summary["latency"] = _latency_report(env, best, app, args)
        summary["finetune_command"] = finetune_command(app, args, checkpoint)
        msglogger.info("AMC best network: episode %d, validation top-1 %.2f (dense %.2f), %.1f%% of the dense MACs; "
                 "saved %s", best_record.episode, best.top1, dense_top1, 100 * best.density, checkpoint)
        msglogger.info("Fine-tune it with:\n%s", summary["finetune_command"])
        with open(os.path.join(app.logdir, SUMMARY_NAME), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    raise SystemExit(run_cli(main, get_args_parser()))
