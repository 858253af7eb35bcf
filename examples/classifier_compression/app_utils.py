"""Building blocks of the image-classification sample applications: resolving the command line into a
dataset, an architecture and a device, building the experiment (model, optimizer, schedule, loaders,
resumed state), scoring, and turning user errors (:class:`~distiller.errors.UserError`) into a short
message and exit status 2; any other exception is a bug and keeps its traceback (exit status 1).

Other example applications reuse these functions (add this directory to ``sys.path``).
"""
import contextlib
import logging
import os
import random
import sys
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

import torch

import distiller
import distiller.thinning  # registers the 'thinning' replayer that load_checkpoint needs for thinned models
from distiller.apputils.checkpoint import load_checkpoint, read_checkpoint
from distiller.apputils.checkpoint_schedule import resume_schedule
from distiller.apputils.data_loaders import load_data
from distiller.apputils.execution_env import config_pylogger
from distiller.errors import ArgumentError, UserError
from distiller.models import check_dataset, create_model, dataset_num_classes, datasets_of_arch
from distiller.models.create import CPU
from distiller.quantization.export.onnx_qdq import import_onnx_package

msglogger = logging.getLogger(__name__)

#: The architecture used when neither --arch nor a checkpoint names one.
DEFAULT_ARCH = {"digits": "resnet20_cifar", "cifar10": "resnet20_cifar", "mnist": "simplenet_mnist",
                "imagenet": "resnet18"}
#: Dataset names recognised in a DATASET_DIR path (lower case, without '-' and '_').
_DIR_HINTS = {"cifar10": "cifar10", "mnist": "mnist", "imagenet": "imagenet", "ilsvrc": "imagenet"}
def run_cli(main, parser, argv=None):
    """Parses ``argv`` and runs ``main(args)``; returns the process exit status.

    User errors (the :class:`~distiller.errors.UserError` family: bad arguments, missing files, bad
    schedules or checkpoints, missing optional packages) print one line on stderr and return 2; the
    traceback is printed only with ``--verbose``. Every other exception is a bug (or an environment
    failure such as CUDA running out of memory) and propagates with its traceback, so the process exits
    with status 1.
    """
    args = parser.parse_args(argv)
    try:
        main(args)
    except UserError as err:
        if args.verbose:
            traceback.print_exc()
        sys.stderr.write(f"{parser.prog}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted; resume with --resume-from <run dir>/checkpoint.pth.tar\n")
        return 130
    return 0


class _HeldRecords(logging.Handler):
    """Keeps every log record it receives."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def logging_before_run_dir(create_run_log, verbose=False):
    """Runs the block (the experiment's setup, which validates all input) before anything is written.

    Inside the block, log records go to the console only and are held; after the block succeeds,
    ``create_run_log()`` creates the run directory and its log (e.g. :func:`config_pylogger`) and the held
    records are written to the run's log file; the context's value then has it as ``.log`` (its ``logdir``
    is the run directory). If the block raises, no run directory is created and the logging configuration
    is as before.
    """
    run = SimpleNamespace(log=None)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    held = _HeldRecords()
    root.handlers[:] = [console, held]
    root.setLevel(logging.DEBUG)
    try:
        yield run
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    run.log = create_run_log()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            for record in held.records:
                if record.levelno >= handler.level:
                    handler.handle(record)


def create_run_log(args):
    """Creates the run directory under ``--out-dir`` and its log (:func:`config_pylogger`).

    Raises:
        ArgumentError: the run directory cannot be created there (not a directory, no permission, disk full).
    """
    try:
        return config_pylogger(None, args.name, args.output_dir, args.verbose)
    except OSError as err:
        raise ArgumentError(f"--out-dir '{args.output_dir}': cannot create the run directory there "
                            f"({err.strerror or err}); pass a writable directory") from err


def resolve_dataset(args, checkpoint_arch=None):
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


def resolve_device_ids(args):
    """``distiller.models.create_model``'s ``device_ids``: -1 for the CPU, else the --gpus list (None: all)."""
    if args.cpu:
        return CPU
    if not torch.cuda.is_available():
        if args.gpus is not None:
            raise ArgumentError(f"--gpus {','.join(map(str, args.gpus))}: CUDA is not available on this machine; "
                                "drop --gpus (the CPU is used)")
        return CPU
    return args.gpus


def resolve_seed(args, checkpoint_extras):
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
    scheduler: distiller.CompressionScheduler
    dummy_input: torch.Tensor
    num_classes: int
    start_epoch: int = 0
    train_loader: Optional[object] = None
    valid_loader: Optional[object] = None
    test_loader: Optional[object] = None
    score_history: list = field(default_factory=list)

    @property
    def device(self):
        return distiller.model_device(self.model)


def _checkpoint_info(args):
    """(path, arch, extras) of the checkpoint named by --resume-from/--exp-load-weights-from."""
    path = args.resume_from or args.exp_load_weights_from
    if path is None:
        return None, None, {}
    checkpoint = read_checkpoint(path)
    return path, checkpoint.get("arch"), dict(checkpoint.get("extras") or {})


def _check_flag_combinations(args):
    if args.evaluate and args.compress:
        raise ArgumentError("--compress has no effect with --evaluate (a checkpoint's masks and compressed weights "
                            "load with it); drop --compress or --evaluate")
    if getattr(args, "quantize_eval", False) and not args.evaluate:
        raise ArgumentError("--quantize-eval quantizes a trained model for evaluation: add --evaluate (-e) and "
                            "--resume-from PATH")
    if args.reset_optimizer and not args.resume_from:
        raise ArgumentError("--reset-optimizer applies to --resume-from; add --resume-from PATH or drop it")
    if getattr(args, "thinnify", False) and args.evaluate and not (args.resume_from or args.exp_load_weights_from):
        raise ArgumentError("--thinnify with --evaluate thins a loaded model: add --resume-from PATH")


def _check_onnx_packages(args):
    """--export-onnx and --qe-export-onnx need the optional ONNX packages: checked before anything runs."""
    for flag, given in (("--export-onnx", args.export_onnx is not None),
                        ("--qe-export-onnx", getattr(args, "qe_export_onnx", False))):
        if given:
            for package in ("onnxscript", "onnxruntime"):
                import_onnx_package(package, flag)


def build_experiment(args):
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
    if arch.endswith("_earlyexit"):
        raise ArgumentError(f"--arch {arch}: early-exit networks return one output per exit, and this app does not "
                            "train or score them yet (Distiller's --earlyexit_lossweights/--earlyexit_thresholds); "
                            f"use {arch[:-len('_earlyexit')]} here, or distiller.EarlyExitMgr in your own loop")
    seed = resolve_seed(args, extras)
    if args.deterministic:
        distiller.set_deterministic(seed)
    else:
        distiller.set_seed(seed)
    msglogger.info("dataset %s, architecture %s, seed %d", dataset, arch, seed)
    train_loader, valid_loader, test_loader, input_shape = load_data(
        dataset, arch, args.data, args.batch_size, args.workers, validation_split=args.validation_split,
        deterministic=args.deterministic, effective_train_size=args.effective_train_size,
        effective_valid_size=args.effective_valid_size, effective_test_size=args.effective_test_size,
        test_only=args.evaluate, seed=seed)
    model = create_model(args.pretrained, dataset, arch, parallel=not args.load_serialized,
                         device_ids=resolve_device_ids(args))
    scheduler, optimizer, start_epoch = _load_start_point(args, model, checkpoint_path, arch)
    scheduler = _configure_schedule(args, model, optimizer, scheduler, start_epoch, checkpoint_path)
    if args.compress and not args.evaluate:
        _check_schedule_runs(scheduler, args.epochs)
    if args.evaluate or args.export_onnx is not None:
        scheduler.mask_all_weights()  # a checkpoint saved during soft pruning holds unmasked weights
    if valid_loader is None and not args.evaluate:
        msglogger.warning("no validation set (--validation-split 0): the test set ranks the epochs")
        valid_loader = test_loader
    return Experiment(arch, dataset, seed, model, optimizer, scheduler,
                      torch.zeros(input_shape, device=distiller.model_device(model)), dataset_num_classes(dataset),
                      start_epoch, train_loader, valid_loader, test_loader,
                      list(extras.get("score_history", [])) if start_epoch > 0 else [])


def _new_optimizer(model, args):
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def _load_start_point(args, model, checkpoint_path, arch):
    """Loads the checkpoint (if any) into ``model``; returns ``(scheduler, optimizer, start_epoch)``.

    The optimizer is created after the checkpoint is loaded, since loading may first replay structural
    changes (thinning) that replace the model's parameters. A resumed run continues with the checkpoint's
    optimizer (its learning rate, momentum buffers...); other runs get a new SGD optimizer from the
    command line.
    """
    if checkpoint_path is None:
        return distiller.CompressionScheduler(model), _new_optimizer(model, args), 0
    lean = args.exp_load_weights_from is not None
    _, loaded, optimizer, start_epoch = load_checkpoint(model, checkpoint_path, lean_checkpoint=lean,
                                                        model_device=distiller.model_device(model),
                                                        strict=not args.load_non_strict, expected_arch=arch)
    if lean or loaded is None:  # a lean load returns a scheduler only to carry structural transforms
        return loaded or distiller.CompressionScheduler(model), _new_optimizer(model, args), 0
    if not args.reset_optimizer:
        if optimizer is None:
            return loaded, _new_optimizer(model, args), start_epoch
        msglogger.info("Resumed the checkpoint's optimizer (lr %g): --lr, --momentum and --weight-decay apply to "
                       "new optimizers only (see --reset-optimizer)", optimizer.param_groups[0]["lr"])
        return loaded, optimizer, start_epoch
    # Fresh optimizer and policies from epoch 0; the pruning masks and structural changes stay.
    scheduler = distiller.CompressionScheduler(model)
    scheduler.load_state_dict({"masks_dict": {name: masker.mask for name, masker in loaded.zeros_mask_dict.items()},
                               "model_transforms": loaded.model_transforms})
    msglogger.info("--reset-optimizer: new optimizer, training restarts at epoch 0")
    if loaded.schedule_yaml is not None and not args.compress:
        msglogger.warning("--reset-optimizer starts a new run: the schedule stored in '%s' is not continued (pass "
                          "--compress to schedule one, or drop --reset-optimizer to continue it)", checkpoint_path)
    return scheduler, _new_optimizer(model, args), 0


def _configure_schedule(args, model, optimizer, scheduler, start_epoch, checkpoint_path):
    """Adds the run's compression policies: a resumed run continues the schedule stored in its checkpoint
    (``--compress``, if given, must be that schedule); a new run takes ``--compress``."""
    resumed_epoch = start_epoch - 1 if start_epoch > 0 else None
    if args.resume_from and not (args.reset_optimizer or args.evaluate):
        scheduler = resume_schedule(model, optimizer, scheduler, resumed_epoch, args.compress, checkpoint_path)
    elif args.compress:
        scheduler = distiller.file_config(model, optimizer, args.compress, scheduler, resumed_epoch=resumed_epoch)
    _warn_unreached_policies(scheduler, args.epochs)
    return scheduler


def _check_schedule_runs(scheduler, epochs):
    """Refuses a schedule none of whose policies starts before ``--epochs``: the run would be plain training."""
    first = min(scheduler.policies, default=None)
    if first is not None and first >= epochs:
        raise ArgumentError(f"--compress: the schedule's first policy runs at epoch {first} but --epochs is {epochs}, "
                            f"so it would compress nothing; raise --epochs above {first} or start the policies "
                            "earlier")


def _warn_unreached_policies(scheduler, epochs):
    last = max(scheduler.policies, default=-1)
    if last >= epochs:
        msglogger.warning("the schedule has policies up to epoch %d but --epochs is %d: the policies of epochs "
                          "%d..%d will not run (raise --epochs to at least %d)", last, epochs, epochs, last,
                          last + 1)


class RunningScores:
    """Accumulates loss and top-1/top-5 accuracy over batches (synchronising only when read)."""

    def __init__(self, num_classes):
        self.topk = min(5, num_classes)
        self.samples, self.loss_sum, self.top1_hits, self.topk_hits = 0, 0.0, 0, 0

    def update(self, output, target, loss):
        with torch.no_grad():
            hits = output.topk(self.topk, dim=1).indices.eq(target.unsqueeze(1))
            self.top1_hits += hits[:, 0].sum()
            self.topk_hits += hits.any(dim=1).sum()
            self.loss_sum += loss.detach() * target.size(0)
        self.samples += target.size(0)

    def values(self):
        """``{'Loss', 'Top1', 'Top5'}`` (accuracies in percent)."""
        n = max(self.samples, 1)
        return {"Loss": float(self.loss_sum) / n, "Top1": 100.0 * float(self.top1_hits) / n,
                "Top5": 100.0 * float(self.topk_hits) / n}


def rank_key(score):
    """Distiller's ranking of epochs: the sparsest model first, then top-1, top-5, and the later epoch."""
    return (-score["params_nonzero"], score["top1"], score["top5"], score["epoch"])


def best_scores(score_history, n):
    """The ``n`` best entries of ``score_history`` (dicts with epoch, top1, top5, sparsity, params_nonzero)."""
    return sorted(score_history, key=rank_key, reverse=True)[:n]
