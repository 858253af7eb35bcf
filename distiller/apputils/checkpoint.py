"""Checkpoints that load with ``torch.load(weights_only=True)`` and resume a schedule exactly.

A checkpoint holds only plain data: the model's state dict (names without DataParallel's ``module.``),
the optimizer's state and class name and the parameter names of each optimizer group, the compression
scheduler's state (masks, each policy's state, and the records of structural model changes such as
thinning and quantization), the epoch, the architecture name and user extras. It is written to a
temporary file and renamed, so a run killed mid-save never leaves a corrupt checkpoint.
"""
import logging
import os
import pickle
import shutil
import tempfile

import torch

from .._version import __version__
from ..registry import MODEL_TRANSFORMS
from ..scheduler import CompressionScheduler
from ..utils import model_is_parallel, normalize_module_name, normalize_state_dict_keys

msglogger = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load_lean_checkpoint"]

# Exact types: subclasses such as enums or torch's TorchVersion would need their class to unpickle.
_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.Size, torch.dtype, torch.device)


def _check_plain(value, path):
    """Raises TypeError naming the first value that ``torch.load(weights_only=True)`` could not read."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{path}[key {key!r}]")
            _check_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{path}[{index}]")
    elif not isinstance(value, torch.Tensor) and type(value) not in _PLAIN_SCALARS:
        raise TypeError(f"checkpoint entry {path} is a {type(value).__module__}.{type(value).__qualname__}; "
                        f"checkpoints hold plain data only (tensors, numbers, strings, lists, dicts)")


def _atomic_write(write, final_path):
    directory = os.path.dirname(os.path.abspath(final_path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".pth.tar")
    os.close(fd)
    try:
        write(tmp_path)
        os.replace(tmp_path, final_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def _optimizer_param_names(model, optimizer):
    names = {id(param): name for name, param in model.named_parameters()}
    return [[normalize_module_name(names.get(id(p), "")) for p in group["params"]] for group in optimizer.param_groups]


def save_checkpoint(epoch, arch, model, optimizer=None, scheduler=None, extras=None, is_best=False, name=None,
                    dir="."):
    """Saves a training checkpoint (``checkpoint.pth.tar``, or ``<name>_checkpoint.pth.tar``).

    Args:
        epoch: the epoch just completed.
        arch: the architecture name (checked on resume).
        model, optimizer, scheduler: what to save (optimizer/scheduler optional).
        extras: a dict of plain data (e.g. best top-1) stored as-is.
        is_best: also copy the file to ``best.pth.tar`` (``<name>_best.pth.tar``).
        name: optional file-name prefix.
        dir: target directory (must exist).
    Returns:
        the checkpoint's path.
    Raises:
        TypeError: when something to save is not plain data (it would need pickled classes).
    """
    if not os.path.isdir(dir):
        raise FileNotFoundError(f"checkpoint directory '{dir}' does not exist")
    prefix = f"{name}_" if name else ""
    path = os.path.join(dir, f"{prefix}checkpoint.pth.tar")
    checkpoint = {"epoch": epoch, "arch": arch, "state_dict": normalize_state_dict_keys(model.state_dict()),
                  "is_parallel": model_is_parallel(model), "distiller_version": __version__,
                  "torch_version": str(torch.__version__)}
    if optimizer is not None:
        checkpoint["optimizer_state_dict"] = optimizer.state_dict()
        checkpoint["optimizer_type"] = type(optimizer).__name__
        checkpoint["optimizer_param_names"] = _optimizer_param_names(model, optimizer)
    if scheduler is not None:
        checkpoint["compression_sched"] = scheduler.state_dict()
    if extras is not None:
        checkpoint["extras"] = extras
    _check_plain(checkpoint, "checkpoint")
    _atomic_write(lambda tmp: torch.save(checkpoint, tmp), path)
    if is_best:
        _atomic_write(lambda tmp: shutil.copyfile(path, tmp), os.path.join(dir, f"{prefix}best.pth.tar"))
    return path


def read_checkpoint(chkpt_file):
    """Loads a checkpoint file safely (``weights_only=True``, on CPU) and checks it is one of ours.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is corrupt, pickles classes, or is not a distiller checkpoint.
    """
    if not os.path.isfile(chkpt_file):
        raise FileNotFoundError(f"checkpoint file not found: '{chkpt_file}'")
    try:
        checkpoint = torch.load(chkpt_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False: unsafe for files of unknown origin, so not repeated.
        raise ValueError(f"'{chkpt_file}' is not a readable distiller checkpoint: it is corrupt, or it pickles "
                         f"Python classes (as Distiller's checkpoints did), which is never loaded") from None
    except Exception as err:  # torch raises several other types (RuntimeError, EOFError, zipfile errors)
        raise ValueError(f"'{chkpt_file}' is not a readable distiller checkpoint (corrupt or truncated): "
                         f"{str(err).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"'{chkpt_file}' is not a distiller checkpoint: it has no 'state_dict' entry")
    return checkpoint


def _replay_model_transforms(model, transforms, optimizer=None):
    for record in transforms:
        kind = record.get("kind")
        if kind not in MODEL_TRANSFORMS:
            raise ValueError(f"the checkpoint records a '{kind}' model transform, but nothing is registered to "
                             f"replay it (known: {sorted(MODEL_TRANSFORMS)}); import the module that provides it")
        # the optimizer (when given) receives parameters a transform adds (e.g. PACT clip values) before
        # its saved state is loaded
        MODEL_TRANSFORMS[kind](model, record, optimizer=optimizer)


def _load_model_state(model, state_dict, strict, chkpt_file, arch):
    target_parallel = model_is_parallel(model)
    state_dict = normalize_state_dict_keys(state_dict, add_prefix=target_parallel)
    try:
        result = model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"the weights in '{chkpt_file}' (arch '{arch}') do not fit this model: "
                         f"{str(err).splitlines()[0]} ...") from None
    if result.missing_keys:
        msglogger.warning("checkpoint lacks %d model entries, e.g. %s", len(result.missing_keys),
                          result.missing_keys[:3])
    if result.unexpected_keys:
        msglogger.warning("checkpoint has %d entries the model lacks, e.g. %s", len(result.unexpected_keys),
                          result.unexpected_keys[:3])


def _rebuild_optimizer(model, checkpoint):
    """Creates the saved optimizer type over the model's parameters, grouped as they were saved."""
    cls = getattr(torch.optim, checkpoint.get("optimizer_type", ""), None)
    if cls is None:
        msglogger.warning("cannot rebuild optimizer of type %r; pass an optimizer to load_checkpoint",
                          checkpoint.get("optimizer_type"))
        return None
    params = {normalize_module_name(name): p for name, p in model.named_parameters()}
    saved_groups = checkpoint["optimizer_state_dict"]["param_groups"]
    group_names = checkpoint.get("optimizer_param_names") or [list(params)]
    groups = [{"params": [params[n] for n in names if n in params]} for names in group_names]
    optimizer = cls(groups, **{k: v for k, v in saved_groups[0].items() if k not in ("params", "initial_lr")})
    return optimizer


def load_checkpoint(model, chkpt_file, optimizer=None, model_device=None, lean_checkpoint=False, strict=False,
                    expected_arch=None):
    """Loads a checkpoint into ``model`` and rebuilds its compression scheduler and optimizer.

    Structural changes recorded by the scheduler (thinning, quantization) are replayed on ``model``
    first, so a freshly built original architecture receives the compressed weights.

    Args:
        model: a freshly built model of the checkpoint's architecture.
        chkpt_file: path of the checkpoint.
        optimizer: optional optimizer whose state is restored; when None and the checkpoint holds an
            optimizer, one of the saved type is created over the model's parameters.
        model_device: where to move the model (default: stay).
        lean_checkpoint: load the weights only: no masks, policies or optimizer, start epoch 0; the
            returned scheduler is None unless the checkpoint records structural transforms, which it then
            carries (and nothing else) so that checkpoints of the loaded model stay loadable.
        strict: require the checkpoint's entries to match the model's exactly.
        expected_arch: when given, a checkpoint of another architecture is an error naming both.
    Returns:
        ``(model, compression_scheduler or None, optimizer or None, start_epoch)``.
    """
    checkpoint = read_checkpoint(chkpt_file)
    arch = checkpoint.get("arch")
    if expected_arch is not None and arch is not None and arch != expected_arch:
        raise ValueError(f"'{chkpt_file}' holds a '{arch}' model but the requested architecture is "
                         f"'{expected_arch}': pass --arch {arch} or another checkpoint")
    sched_state = checkpoint.get("compression_sched")
    if sched_state is not None:  # even for lean loads: the weights only fit the transformed structure
        _replay_model_transforms(model, sched_state.get("model_transforms", []), optimizer)
    _load_model_state(model, checkpoint["state_dict"], strict, chkpt_file, arch)
    if model_device is not None:
        model.to(model_device)
    scheduler = None
    if lean_checkpoint:
        if sched_state and sched_state.get("model_transforms"):
            # Only the structural record: later checkpoints of this model must stay loadable.
            scheduler = CompressionScheduler(model, device=model_device)
            scheduler.model_transforms = list(sched_state["model_transforms"])
        return model, scheduler, None, 0
    if sched_state is not None:
        scheduler = CompressionScheduler(model, device=model_device)
        scheduler.load_state_dict(sched_state, normalize_dataparallel_keys=True)
    if "optimizer_state_dict" in checkpoint:
        if optimizer is None:
            optimizer = _rebuild_optimizer(model, checkpoint)
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    start_epoch = checkpoint.get("epoch", -1) + 1
    msglogger.info("Loaded checkpoint '%s' (arch %s, epoch %s)", chkpt_file, arch, checkpoint.get("epoch"))
    return model, scheduler, optimizer, start_epoch


def load_lean_checkpoint(model, chkpt_file, model_device=None):
    """Loads only the weights (Distiller's ``load_lean_checkpoint``)."""
    return load_checkpoint(model, chkpt_file, model_device=model_device, lean_checkpoint=True)[0]
