"""Checkpoints that load with ``torch.load(weights_only=True)`` and resume a schedule exactly.

A checkpoint holds only plain data: the model's state dict (names without DataParallel's ``module.``),
the optimizer's state and class name and the parameter names of each optimizer group, the compression
scheduler's state (masks, each policy's state, and the records of structural model changes such as
thinning and quantization), the epoch, the architecture name and user extras. It is written to a
temporary file and renamed, so a run killed mid-save never leaves a corrupt checkpoint.
"""
from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Optional, TypeVar, Union

import torch
from torch import nn
from torch.optim import Optimizer

from .._version import __version__
from ..errors import CheckpointError, InputFileError, summarize_names
from ..scheduler import CompressionScheduler
from ..utils import model_is_parallel, normalize_module_name, normalize_state_dict_keys
from .checkpoint_fit import StateFit, architecture_name, mask_fit, replay_model_transforms, state_fit, transformed_copy
from .contents_table import get_contents_table

_T = TypeVar("_T")
_Path = Union[str, "os.PathLike[str]"]

msglogger = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load_lean_checkpoint", "get_contents_table"]

#: Key of an optimizer parameter group that a policy owns (the value is the policy's name): it trains parameters
#: outside the model, such as distillation hint adapters. ``load_checkpoint`` rebuilds such a group with
#: placeholders holding the saved optimizer state, which the policy adopts when the schedule is built again.
POLICY_PARAM_GROUP = "distiller_policy"

# Exact types: subclasses such as enums or torch's TorchVersion would need their class to unpickle.
_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.Size, torch.dtype, torch.device)


def _check_plain(value: Any, path: str) -> None:
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


def _atomic_write(write: Callable[[str], Any], final_path: _Path) -> None:
    directory = os.path.dirname(os.path.abspath(final_path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".pth.tar")
    os.close(fd)
    try:
        write(tmp_path)
        os.replace(tmp_path, final_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def _optimizer_param_names(model: nn.Module, optimizer: Optimizer) -> list[list[str]]:
    names = {id(param): name for name, param in model.named_parameters()}
    return [[normalize_module_name(names.get(id(p), "")) for p in group["params"]] for group in optimizer.param_groups]


def save_checkpoint(epoch: int, arch: Optional[str], model: nn.Module, optimizer: Optional[Optimizer] = None,
                    scheduler: Optional[CompressionScheduler] = None, extras: Optional[Mapping[str, Any]] = None,
                    is_best: bool = False, name: Optional[str] = None, dir: Union[str, os.PathLike[str]] = ".") -> str:
    """Saves a training checkpoint (``checkpoint.pth.tar``, or ``<name>_checkpoint.pth.tar``).

    Args:
        epoch: the epoch just completed.
        arch: the architecture name (checked on resume).
        model, optimizer, scheduler: what to save (optimizer/scheduler optional).
        extras: a dict of plain data (e.g. best top-1) stored as-is.
        is_best: also copy the file to ``best.pth.tar`` (``<name>_best.pth.tar``).
        name: optional file-name prefix.
        dir: target directory (created if missing).
    Returns:
        the checkpoint's path.
    Raises:
        TypeError: when something to save is not plain data (it would need pickled classes).
    """
    os.makedirs(dir, exist_ok=True)
    prefix = f"{name}_" if name else ""
    path = os.path.join(dir, f"{prefix}checkpoint.pth.tar")
    checkpoint: dict[str, Any] = {
        "epoch": epoch, "arch": arch, "state_dict": normalize_state_dict_keys(model.state_dict()),
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


def read_checkpoint(chkpt_file: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """Loads a checkpoint file safely (``weights_only=True``, on CPU) and checks it is one of ours.

    Raises:
        InputFileError: the file does not exist.
        CheckpointError: the file is corrupt, pickles classes, or is not a distiller checkpoint.
    """
    if not os.path.isfile(chkpt_file):
        raise InputFileError(f"checkpoint file not found: '{chkpt_file}'")
    try:
        checkpoint = torch.load(chkpt_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False: unsafe for files of unknown origin, so not repeated.
        raise CheckpointError(f"'{chkpt_file}' is not a readable distiller checkpoint: it is corrupt, or it pickles "
                              f"Python classes (as Distiller's checkpoints did), which is never loaded; convert a "
                              f"Distiller checkpoint with: python -m distiller.apputils.convert_checkpoint "
                              f"{chkpt_file} NEW.pth.tar") from None
    except Exception as err:  # torch raises several other types (RuntimeError, EOFError, zipfile errors)
        raise CheckpointError(f"'{chkpt_file}' is not a readable distiller checkpoint (corrupt or truncated): "
                              f"{str(err).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"'{chkpt_file}' is not a distiller checkpoint: it has no 'state_dict' entry")
    return checkpoint


def _check_architecture(chkpt_file: _Path, arch: Optional[str], expected_arch: Optional[str], strict: bool) -> None:
    if expected_arch is None or arch is None or arch == expected_arch:
        return
    message = f"'{chkpt_file}' holds a '{arch}' model but the requested architecture is '{expected_arch}'"
    if strict:
        raise CheckpointError(f"{message}: pass --arch {arch}, or another checkpoint (or load the matching "
                              f"entries only: strict=False, --load-non-strict in the sample apps)")
    msglogger.warning("%s: loading the entries that match", message)


def _check_optimizer_groups(model: nn.Module, optimizer: Optional[Optimizer], checkpoint: Mapping[str, Any],
                            chkpt_file: _Path) -> None:
    """The optimizer (passed, or rebuilt when None) must have the saved optimizer's parameter groups, or
    the saved state would be attached to the wrong parameters."""
    saved_groups = checkpoint["optimizer_state_dict"]["param_groups"]
    saved = [len(group["params"]) for group in saved_groups]
    if optimizer is not None:
        own = [len(group["params"]) for group in optimizer.param_groups]
        if own != saved:
            raise CheckpointError(f"the optimizer passed has parameter groups of sizes {own}, but the one saved in "
                                  f"'{chkpt_file}' has {saved}: build it over the same parameter groups, or pass "
                                  f"optimizer=None to rebuild the saved optimizer")
        return
    params = {normalize_module_name(name) for name, _ in model.named_parameters()}
    model_groups = [names for names, group in zip(checkpoint.get("optimizer_param_names") or [], saved_groups)
                    if POLICY_PARAM_GROUP not in group]
    stale = [name for names in model_groups for name in names if name not in params]
    if stale:
        named = [name for name in stale if name]  # unnamed: no longer in the model when it was saved
        raise CheckpointError(f"the optimizer saved in '{chkpt_file}' holds {len(stale)} parameters the model does "
                              f"not have{f' ({summarize_names(named)})' if named else ''}: it was saved after a "
                              f"change of the model that it did not follow; load the weights only "
                              f"(lean_checkpoint=True, --exp-load-weights-from)")


def _mismatch_message(chkpt_file: _Path, arch: Optional[str], model: nn.Module, expected_arch: Optional[str],
                      weights: StateFit, masks: StateFit) -> str:
    problems = "; ".join(part for part in (weights.describe(), masks.describe(("mask", "masks"))) if part)
    saved_as = f" (a '{arch}' checkpoint)" if arch else ""
    return (f"'{chkpt_file}'{saved_as} does not fit {architecture_name(model, expected_arch)} model: it {problems}. "
            f"Load it into {f'a {arch!r} model' if arch else 'the model it was saved from'}, or load the matching "
            f"entries only (strict=False; --load-non-strict in the sample apps)")


def _report_partial_load(chkpt_file: _Path, weights: StateFit, masks: StateFit, drops_optimizer: bool) -> None:
    """Says what a non-strict load left at initial values, ignored and dropped."""
    if weights.left_initial:
        msglogger.warning("'%s' lacks %d model entries (missing or of another shape), left at their initial values: "
                          "%s", chkpt_file, len(weights.left_initial), summarize_names(weights.left_initial))
    if weights.unexpected:
        msglogger.warning("ignored %d entries of '%s' that the model lacks: %s", len(weights.unexpected),
                          chkpt_file, summarize_names(weights.unexpected))
    if not masks.exact:
        dropped = sorted(masks.skipped)
        msglogger.warning("dropped %d mask(s) of '%s' that fit no parameter: %s", len(dropped), chkpt_file,
                          summarize_names(dropped))
    if drops_optimizer:
        msglogger.warning("the optimizer state of '%s' is not restored: the model only partly fits it", chkpt_file)


def _fitting(entries: Mapping[str, _T], fit: StateFit) -> dict[str, _T]:
    """``entries`` without those ``fit`` found unusable (names normalised)."""
    return {normalize_module_name(name): value for name, value in entries.items()
            if normalize_module_name(name) not in fit.skipped}


def _rebuild_optimizer(model: nn.Module, checkpoint: Mapping[str, Any]) -> Optional[Optimizer]:
    """Creates the saved optimizer type over the model's parameters, grouped as they were saved; a group a policy
    owns gets empty placeholders, which the policy replaces by its parameters (keeping their restored state)."""
    cls = getattr(torch.optim, checkpoint.get("optimizer_type", ""), None)
    if cls is None:
        msglogger.warning("cannot rebuild optimizer of type %r; pass an optimizer to load_checkpoint",
                          checkpoint.get("optimizer_type"))
        return None
    params = {normalize_module_name(name): p for name, p in model.named_parameters()}
    saved_groups = checkpoint["optimizer_state_dict"]["param_groups"]
    group_names = checkpoint.get("optimizer_param_names") or [list(params)]
    groups = [{"params": [nn.Parameter(torch.empty(0)) for _ in names] if POLICY_PARAM_GROUP in saved
               else [params[n] for n in names if n in params]} for names, saved in zip(group_names, saved_groups)]
    optimizer = cls(groups, **{k: v for k, v in saved_groups[0].items() if k not in ("params", "initial_lr")})
    return optimizer


def load_checkpoint(model: nn.Module, chkpt_file: Union[str, os.PathLike[str]], optimizer: Optional[Optimizer] = None,
                    model_device: Union[str, torch.device, None] = None, lean_checkpoint: bool = False,
                    strict: bool = True, expected_arch: Optional[str] = None
                    ) -> tuple[nn.Module, Optional[CompressionScheduler], Optional[Optimizer], int]:
    """Loads a checkpoint into ``model`` and rebuilds its compression scheduler and optimizer.

    Structural changes recorded by the scheduler (thinning, quantization) are replayed on ``model`` first,
    in the order they happened, so a freshly built original architecture receives the compressed weights;
    the masks are named as in the transformed model. Everything is checked before anything changes: when
    an error is raised, ``model`` and ``optimizer`` are untouched.

    Args:
        model: a freshly built model of the checkpoint's architecture.
        chkpt_file: path of the checkpoint.
        optimizer: optional optimizer whose state is restored; when None and the checkpoint holds an
            optimizer, one of the saved type is created over the model's parameters.
        model_device: where to move the model (default: stay).
        lean_checkpoint: load the weights only: no masks, policies or optimizer, start epoch 0; the
            returned scheduler is None unless the checkpoint records structural transforms, which it then
            carries (and nothing else) so that checkpoints of the loaded model stay loadable.
        strict: refuse a checkpoint whose model entries or masks do not match the model exactly (missing,
            unexpected or of another shape), naming the first few of each and both architectures.
            Distiller's default was ``False``: it only warned and returned a partly random model; the
            default is now ``True`` (a fix). With ``False``, the matching entries load, the others stay at
            their initial values and a warning lists them, masks that fit no parameter are dropped, a
            checkpoint of another ``expected_arch`` is loaded too, and the optimizer state is restored only
            when the whole model fits.
        expected_arch: when given, a checkpoint of another architecture is an error naming both.
    Returns:
        ``(model, compression_scheduler or None, optimizer or None, start_epoch)``; the scheduler holds the
        masks, the pending policy states and the schedule's YAML text (see
        :func:`~distiller.apputils.resume_schedule`).
    Raises:
        InputFileError: the file does not exist.
        CheckpointError: the file is not a readable distiller checkpoint, it does not fit the model (with
            ``strict``), its structural changes cannot be replayed, or ``optimizer`` has other parameter
            groups than the saved one.

    Example:
        >>> model, scheduler, optimizer, start_epoch = load_checkpoint(create_model(False, "cifar10", "resnet20_cifar"),
        ...                                                            "logs/run/checkpoint.pth.tar")
    """
    checkpoint = read_checkpoint(chkpt_file)
    arch = checkpoint.get("arch")
    _check_architecture(chkpt_file, arch, expected_arch, strict)
    sched_state = checkpoint.get("compression_sched")
    transforms = list((sched_state or {}).get("model_transforms", []))
    probe_model, probe_optimizer = transformed_copy(model, optimizer, transforms, chkpt_file)
    weights = state_fit(probe_model.state_dict(), checkpoint["state_dict"])
    masks = StateFit() if lean_checkpoint or sched_state is None else mask_fit(probe_model,
                                                                               sched_state.get("masks_dict", {}))
    if strict and not (weights.exact and masks.exact):
        raise CheckpointError(_mismatch_message(chkpt_file, arch, model, expected_arch, weights, masks))
    restore_optimizer = not lean_checkpoint and "optimizer_state_dict" in checkpoint and weights.exact
    if restore_optimizer:
        _check_optimizer_groups(probe_model, probe_optimizer, checkpoint, chkpt_file)

    # Every check passed: change the model.
    replay_model_transforms(model, transforms, optimizer)
    model.load_state_dict(normalize_state_dict_keys(_fitting(checkpoint["state_dict"], weights),
                                                    add_prefix=model_is_parallel(model)), strict=False)
    if not (weights.exact and masks.exact):
        _report_partial_load(chkpt_file, weights, masks,
                             drops_optimizer=not lean_checkpoint and "optimizer_state_dict" in checkpoint)
    if model_device is not None:
        model.to(model_device)
    scheduler = None
    if lean_checkpoint:
        if transforms:
            # Only the structural record: later checkpoints of this model must stay loadable.
            scheduler = CompressionScheduler(model, device=model_device)
            scheduler.load_state_dict({"model_transforms": transforms})
        return model, scheduler, None, 0
    if sched_state is not None:
        scheduler = CompressionScheduler(model, device=model_device)
        scheduler.load_state_dict(dict(sched_state, masks_dict=_fitting(sched_state.get("masks_dict", {}), masks)),
                                  normalize_dataparallel_keys=True)
    if restore_optimizer:
        if optimizer is None:
            optimizer = _rebuild_optimizer(model, checkpoint)
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    start_epoch = checkpoint.get("epoch", -1) + 1
    msglogger.info("Loaded checkpoint '%s' (arch %s, epoch %s)", chkpt_file, arch, checkpoint.get("epoch"))
    return model, scheduler, optimizer, start_epoch


def load_lean_checkpoint(model: nn.Module, chkpt_file: Union[str, os.PathLike[str]],
                         model_device: Union[str, torch.device, None] = None) -> nn.Module:
    """Loads only the weights (Distiller's ``load_lean_checkpoint``)."""
    return load_checkpoint(model, chkpt_file, model_device=model_device, lean_checkpoint=True)[0]
