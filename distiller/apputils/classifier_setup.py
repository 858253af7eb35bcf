"""Setting up an image-classification experiment from its command line: the dataset, the architecture,
the device and the seed it resolves to, then the model, optimizer, compression schedule, data loaders and
resumed state (:func:`build_experiment`). All user input is validated here, before any training, so a bad
run fails fast with a :class:`~distiller.errors.UserError` and writes nothing.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch.utils.data import DataLoader

from .. import thinning as _thinning  # noqa: F401  registers the 'thinning' replayer that thinned checkpoints need
from ..errors import ArgumentError
from ..knowledge_distillation import policy_from_args
from ..models import check_dataset, create_model, dataset_num_classes, datasets_of_arch
from ..models.create import CPU
from ..quantization.export.onnx_qdq import import_onnx_package
from ..scheduler import CompressionScheduler
from ..utils import model_device, set_deterministic, set_seed
from ..config import file_config
from .checkpoint import load_checkpoint, read_checkpoint
from .classifier_analysis import check_analysis_args
from .classifier_earlyexit import check_earlyexit_flags
from .checkpoint_schedule import resume_schedule
from .data_loaders import load_data

__all__ = ["Experiment", "build_experiment", "resolve_dataset", "resolve_device_ids", "resolve_seed", "DEFAULT_ARCH"]

msglogger = logging.getLogger(__name__)

#: The architecture used when neither --arch nor a checkpoint names one.
DEFAULT_ARCH = {"digits": "resnet20_cifar", "cifar10": "resnet20_cifar", "mnist": "simplenet_mnist",
                "imagenet": "resnet18"}
#: Dataset names recognised in a DATASET_DIR path (lower case, without '-' and '_').
_DIR_HINTS = {"cifar10": "cifar10", "mnist": "mnist", "imagenet": "imagenet", "ilsvrc": "imagenet"}


def resolve_dataset(args: argparse.Namespace, checkpoint_arch: Optional[str] = None) -> str:
    """The dataset to use: ``--dataset``, else ``digits`` without DATASET_DIR, else a dataset named in the
    DATASET_DIR path, else the one the architecture is built for.

    Raises:
        ArgumentError: unknown dataset, DATASET_DIR given for ``digits``, or nothing tells the dataset.
    """
    if args.dataset:
        dataset = check_dataset(args.dataset)
        if dataset == "digits" and args.data:
            raise ArgumentError(f"the digits dataset is embedded in distiller and takes no DATASET_DIR; drop "
                                f"'{args.data}' or pass the dataset it holds with --dataset")
        return dataset
    if not args.data:
        return "digits"
    path = os.path.abspath(args.data).lower().replace("-", "").replace("_", "")
    named = {dataset for hint, dataset in _DIR_HINTS.items() if hint in path}
    if len(named) == 1:
        return named.pop()
    arch = args.arch or checkpoint_arch
    candidates = [d for d in datasets_of_arch(arch) if d != "digits"] if arch else []
    if len(candidates) == 1:
        return candidates[0]
    raise ArgumentError(f"cannot tell which dataset '{args.data}' holds; pass --dataset cifar10, mnist or imagenet")


def resolve_device_ids(args: argparse.Namespace) -> Union[int, list[int], None]:
    """``distiller.models.create_model``'s ``device_ids``: -1 for the CPU, else the --gpus list (None: all)."""
    if args.cpu:
        return CPU
    if not torch.cuda.is_available():
        if args.gpus is not None:
            raise ArgumentError(f"--gpus {','.join(map(str, args.gpus))}: CUDA is not available on this machine; "
                                "drop --gpus (the CPU is used)")
        return CPU
    return args.gpus


def resolve_seed(args: argparse.Namespace, checkpoint_extras: dict[str, Any]) -> int:
    """--seed, else the resumed checkpoint's seed, else 0 with --deterministic, else a random seed."""
    if args.seed is not None:
        return args.seed
    if checkpoint_extras.get("seed") is not None:
        return int(checkpoint_extras["seed"])
    return 0 if args.deterministic else random.SystemRandom().randrange(2 ** 31)


@dataclass
class Experiment:
    """Everything a run needs, built from the command line by :func:`build_experiment`."""
    arch: str
    dataset: str
    seed: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: CompressionScheduler
    dummy_input: torch.Tensor
    num_classes: int
    start_epoch: int = 0
    train_loader: Optional[DataLoader] = None
    valid_loader: Optional[DataLoader] = None
    test_loader: Optional[DataLoader] = None
    score_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)


def _checkpoint_info(args: argparse.Namespace) -> tuple[Optional[str], Optional[str], dict[str, Any]]:
    """(path, arch, extras) of the checkpoint named by --resume-from/--exp-load-weights-from."""
    path = args.resume_from or args.exp_load_weights_from
    if path is None:
        return None, None, {}
    checkpoint = read_checkpoint(path)
    return path, checkpoint.get("arch"), dict(checkpoint.get("extras") or {})


def _check_flag_combinations(args: argparse.Namespace) -> None:
    if args.evaluate and args.compress:
        raise ArgumentError("--compress has no effect with --evaluate (a checkpoint's masks and compressed weights "
                            "load with it); drop --compress or --evaluate")
    if getattr(args, "quantize_eval", False) and not args.evaluate:
        raise ArgumentError("--quantize-eval quantizes a trained model for evaluation: add --evaluate (-e) and "
                            "--resume-from PATH")
    if getattr(args, "greedy", False) and (args.evaluate or args.compress):
        raise ArgumentError("--greedy prunes and fine-tunes by itself: drop --evaluate and --compress (start from a "
                            "trained model with --resume-from or --exp-load-weights-from)")
    if getattr(args, "greedy", False) and args.greedy_target_density is None:
        raise ArgumentError("--greedy needs --greedy-target-density (the share of the MACs to keep, e.g. 0.5)")
    if getattr(args, "kd_teacher", None) and args.evaluate:
        raise ArgumentError("--kd-teacher distils while training: drop it with --evaluate (-e)")
    if args.reset_optimizer and not args.resume_from:
        raise ArgumentError("--reset-optimizer applies to --resume-from; add --resume-from PATH or drop it")
    if getattr(args, "thinnify", False) and args.evaluate and not (args.resume_from or args.exp_load_weights_from):
        raise ArgumentError("--thinnify with --evaluate thins a loaded model: add --resume-from PATH")


def _check_onnx_packages(args: argparse.Namespace) -> None:
    """--export-onnx and --qe-export-onnx need the optional ONNX packages: checked before anything runs."""
    for flag, given in (("--export-onnx", args.export_onnx is not None),
                        ("--qe-export-onnx", getattr(args, "qe_export_onnx", False))):
        if given:
            for package in ("onnxscript", "onnxruntime"):
                import_onnx_package(package, flag)


def build_experiment(args: argparse.Namespace) -> Experiment:
    """Resolves and builds everything the run needs, validating all user input before any training.

    Returns:
        an :class:`Experiment`.
    Raises:
        UserError: bad input (an unknown name, a missing file, a bad schedule or checkpoint...).
    """
    _check_flag_combinations(args)
    _check_onnx_packages(args)
    checkpoint_path, checkpoint_arch, extras = _checkpoint_info(args)
    dataset = resolve_dataset(args, checkpoint_arch)
    arch = args.arch or checkpoint_arch or DEFAULT_ARCH[dataset]
    if hasattr(args, "earlyexit_thresholds"):
        check_earlyexit_flags(args, arch)
    seed = resolve_seed(args, extras)
    if args.deterministic:
        set_deterministic(seed)
    else:
        set_seed(seed)
    msglogger.info("dataset %s, architecture %s, seed %d", dataset, arch, seed)
    train_loader, valid_loader, test_loader, input_shape = loaders_of_args(args, dataset, arch, seed,
                                                                           test_only=args.evaluate)
    model = create_model(args.pretrained, dataset, arch, parallel=not args.load_serialized,
                         device_ids=resolve_device_ids(args))
    if getattr(args, "sync_bn", False):  # before the checkpoint and the schedule: they see the converted modules
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter and buffer names
    check_analysis_args(args, model)
    scheduler, optimizer, start_epoch = _load_start_point(args, model, checkpoint_path, arch)
    _add_distillation(args, model, scheduler, dataset)
    scheduler = _configure_schedule(args, model, optimizer, scheduler, start_epoch)
    if args.compress and not args.evaluate:
        _check_schedule_runs(scheduler, args.epochs)
    if args.evaluate or args.export_onnx is not None:
        scheduler.mask_all_weights()  # a checkpoint saved during soft pruning holds unmasked weights
    if valid_loader is None and not args.evaluate:
        msglogger.warning("no validation set (--validation-split 0): the test set ranks the epochs")
        valid_loader = test_loader
    return Experiment(arch, dataset, seed, model, optimizer, scheduler,
                      torch.zeros(input_shape, device=model_device(model)), dataset_num_classes(dataset),
                      start_epoch, train_loader, valid_loader, test_loader,
                      list(extras.get("score_history", [])) if start_epoch > 0 else [])


def loaders_of_args(args: argparse.Namespace, dataset: str, arch: str, seed: int, test_only: bool,
                    fixed_subset: bool = False, sequential: bool = False) -> tuple[Any, ...]:
    """:func:`~distiller.apputils.data_loaders.load_data` with the loader flags of the command line
    (``DATASET_DIR``, ``-b``, ``-j``, ``--validation-split``, ``--det`` and the effective sizes)."""
    return load_data(dataset, arch, args.data, args.batch_size, args.workers, validation_split=args.validation_split,
                     deterministic=args.deterministic, effective_train_size=args.effective_train_size,
                     effective_valid_size=args.effective_valid_size, effective_test_size=args.effective_test_size,
                     fixed_subset=fixed_subset, sequential=sequential, test_only=test_only, seed=seed)


def _new_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def _load_start_point(args: argparse.Namespace, model: torch.nn.Module, checkpoint_path: Optional[str],
                      arch: str) -> tuple[CompressionScheduler, torch.optim.Optimizer, int]:
    """Loads the checkpoint (if any) into ``model``; returns ``(scheduler, optimizer, start_epoch)``.

    The optimizer is created after the checkpoint is loaded, since loading may first replay structural
    changes (thinning) that replace the model's parameters. A resumed run continues with the checkpoint's
    optimizer (its learning rate, momentum buffers...); other runs get a new SGD optimizer from the
    command line.
    """
    if checkpoint_path is None:
        return CompressionScheduler(model), _new_optimizer(model, args), 0
    lean = args.exp_load_weights_from is not None
    _, loaded, optimizer, start_epoch = load_checkpoint(model, checkpoint_path, lean_checkpoint=lean,
                                                        model_device=model_device(model),
                                                        strict=not args.load_non_strict, expected_arch=arch)
    if lean or loaded is None:  # a lean load returns a scheduler only to carry structural transforms
        return loaded or CompressionScheduler(model), _new_optimizer(model, args), 0
    if not args.reset_optimizer:
        if optimizer is None:
            return loaded, _new_optimizer(model, args), start_epoch
        msglogger.info("Resumed the checkpoint's optimizer (lr %g): --lr, --momentum and --weight-decay apply to "
                       "new optimizers only (see --reset-optimizer)", optimizer.param_groups[0]["lr"])
        return loaded, optimizer, start_epoch
    # Fresh optimizer and policies from epoch 0; the pruning masks and structural changes stay.
    scheduler = CompressionScheduler(model)
    scheduler.load_state_dict({"masks_dict": {name: masker.mask for name, masker in loaded.zeros_mask_dict.items()},
                               "model_transforms": loaded.model_transforms})
    msglogger.info("--reset-optimizer: new optimizer, training restarts at epoch 0")
    if loaded.schedule_yaml is not None and not args.compress:
        msglogger.warning("--reset-optimizer starts a new run: the schedule stored in '%s' is not continued (pass "
                          "--compress to schedule one, or drop --reset-optimizer to continue it)", checkpoint_path)
    return scheduler, _new_optimizer(model, args), 0


def _configure_schedule(args: argparse.Namespace, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: CompressionScheduler, start_epoch: int) -> CompressionScheduler:
    """Adds the run's compression policies: a resumed run continues the schedule stored in its checkpoint
    (``--compress``, if given, must be that schedule); a new run takes ``--compress``."""
    resumed_epoch = start_epoch - 1 if start_epoch > 0 else None
    if args.resume_from and not (args.reset_optimizer or args.evaluate):
        scheduler = resume_schedule(model, optimizer, scheduler, resumed_epoch, args.compress, args.resume_from)
    elif args.compress:
        scheduler = file_config(model, optimizer, args.compress, scheduler, resumed_epoch=resumed_epoch)
    _warn_unreached_policies(scheduler, args.epochs)
    return scheduler


def _add_distillation(args: argparse.Namespace, model: torch.nn.Module, scheduler: CompressionScheduler,
                      dataset: str) -> None:
    """Schedules the knowledge distillation that the ``--kd-*`` flags describe, before the schedule's policies
    (so the regularization terms those add are not scaled by the student weight)."""
    built = policy_from_args(model, args, dataset) if hasattr(args, "kd_teacher") and not args.evaluate else None
    if built is not None:
        policy, schedule = built
        scheduler.add_policy(policy, name=policy.name, schedule=schedule)


def _check_schedule_runs(scheduler: CompressionScheduler, epochs: int) -> None:
    """Refuses a schedule none of whose policies starts before ``--epochs``: the run would be plain training."""
    first = min(scheduler.policies, default=None)
    if first is not None and first >= epochs:
        raise ArgumentError(f"--compress: the schedule's first policy runs at epoch {first} but --epochs is {epochs}, "
                            f"so it would compress nothing; raise --epochs above {first} or start the policies "
                            "earlier")


def _warn_unreached_policies(scheduler: CompressionScheduler, epochs: int) -> None:
    last = max(scheduler.policies, default=-1)
    if last >= epochs:
        msglogger.warning("the schedule has policies up to epoch %d but --epochs is %d: the policies of epochs "
                          "%d..%d will not run (raise --epochs to at least %d)", last, epochs, epochs, last,
                          last + 1)
