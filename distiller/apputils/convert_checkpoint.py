"""Converts a checkpoint written by IntelLabs Distiller into this library's weights-only checkpoint.

Usage::

    python -m distiller.apputils.convert_checkpoint OLD.pth.tar NEW.pth.tar [--arch ARCH] [--dataset DATASET]

Distiller's checkpoints pickle classes (``optimizer_type``, ``quantizer_metadata['type']``, the
``thinning_recipes``), so :func:`~distiller.apputils.load_checkpoint` refuses them. The converter reads one
with a restricted unpickler (:mod:`~distiller.apputils.distiller_unpickler`), then

1. builds the architecture (``--arch``, else the checkpoint's ``arch``) for ``--dataset`` (else the first
   dataset the architecture is built for: only the input format matters);
2. replays the thinning recipes, then the quantizer, recording both in a ``CompressionScheduler``
   (:mod:`~distiller.apputils.distiller_transforms`), so the new checkpoint replays them when it loads;
3. loads the masks of ``compression_sched`` and the weights, both strictly;
4. rebuilds the optimizer when its state fits the model (else drops it, saying why), and keeps the plain
   values of ``extras`` (and of any other entry), dropping the rest with a note;
5. writes the checkpoint with :func:`~distiller.apputils.save_checkpoint`, loads it into a fresh model with
   :func:`~distiller.apputils.load_checkpoint` and compares the two models' outputs on a random input
   (the self-check) before moving it to ``NEW``.

User errors (a missing file, a file that is not a Distiller checkpoint, an unknown architecture or quantizer,
recipes or weights that do not fit the architecture) exit with status 2 and one line naming the entry.
"""
from __future__ import annotations

import argparse
import enum
import inspect
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import ArgumentError, CheckpointError
from ..models import check_dataset, create_model, dataset_input_shape, datasets_of_arch
from ..models.create import CPU
from ..quantization.base import Quantizer
from ..registry import QUANTIZERS
from ..scheduler import CompressionScheduler
from ..utils import normalize_module_name, normalize_state_dict_keys
from .app_runner import run_cli
from .checkpoint import load_checkpoint, save_checkpoint
from .checkpoint_fit import mask_fit, state_fit
from .distiller_transforms import replay_distiller_quantizer, replay_distiller_recipes
from .distiller_unpickler import read_distiller_checkpoint, reference_path

__all__ = ["convert_checkpoint", "get_args_parser", "main"]

msglogger = logging.getLogger(__name__)

_Path = Union[str, "os.PathLike[str]"]
#: The entries the converter translates; any other entry's plain value goes to ``extras``.
_CONVERTED = ("state_dict", "epoch", "arch", "optimizer_state_dict", "optimizer_type", "compression_sched",
              "thinning_recipes", "quantizer_metadata", "extras")
_SCALARS = (str, int, float, bool, type(None))


class _NotPlainError(Exception):
    """A value that a weights-only checkpoint cannot hold (its description is the message)."""


def _plain(value: Any) -> Any:
    """``value`` as plain data: NumPy values and 0-d tensors become numbers, enums their names, mappings dicts."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biufc":  # numbers (not strings or objects)
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value.item() if value.dim() == 0 else value
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Mapping) and all(type(key) in _SCALARS for key in value):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return tuple(items) if type(value) is tuple else items
    raise _NotPlainError(reference_path(value) or f"{type(value).__module__}.{type(value).__qualname__}")


def _extras(checkpoint: Mapping[str, Any], dropped: list[str]) -> dict[str, Any]:
    """The plain values of ``extras``, then of the entries the converter does not translate (older
    Distiller versions kept e.g. ``best_top1`` at the top level or in ``compression_sched``); the others
    are listed in ``dropped``."""
    saved = checkpoint.get("extras") or {}
    if not isinstance(saved, Mapping):
        dropped.append(f"extras (a {type(saved).__name__}, not a dict)")
        saved = {}
    entries = [(f"extras[{key!r}]", key, value) for key, value in saved.items()]
    sched = checkpoint.get("compression_sched")
    if isinstance(sched, Mapping):
        entries += [(f"compression_sched[{key!r}]", key, value) for key, value in sched.items() if key != "masks_dict"]
    entries += [(repr(key), key, value) for key, value in checkpoint.items() if key not in _CONVERTED]
    extras: dict[str, Any] = {}
    for where, key, value in entries:
        if key in extras:
            continue
        try:
            if type(key) not in _SCALARS:
                raise _NotPlainError(f"a key of type {type(key).__name__}")
            extras[key] = _plain(value)
        except _NotPlainError as err:
            dropped.append(f"{where} (holds {err})")
    return extras


def _architecture(checkpoint: Mapping[str, Any], arch: Optional[str], dataset: Optional[str],
                  source: str) -> tuple[str, str]:
    """``(arch, dataset)``: the requested or recorded architecture, and a dataset it is built for."""
    if arch is None:
        arch = checkpoint.get("arch")
        if not isinstance(arch, str) or not arch:
            raise CheckpointError(f"'{source}' does not record its architecture: pass --arch (e.g. --arch "
                                  f"resnet20_cifar)")
        try:
            datasets = datasets_of_arch(arch)
        except ArgumentError as err:
            raise CheckpointError(f"'{source}' was saved from an {err}; pass --arch with the name of its "
                                  f"architecture here") from None
    else:
        datasets = datasets_of_arch(arch)
    return arch, check_dataset(dataset) if dataset is not None else datasets[0]


def _masks(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The masks of ``compression_sched['masks_dict']`` that are set, by normalised parameter name."""
    sched = checkpoint.get("compression_sched")
    if sched is None:
        return {}
    masks = sched.get("masks_dict") if isinstance(sched, Mapping) else None
    if not isinstance(masks, Mapping):
        raise CheckpointError(f"'{source}' compression_sched has no 'masks_dict' mapping: it is not the state of "
                              f"Distiller's CompressionScheduler")
    wrong = [name for name, mask in masks.items() if mask is not None and not isinstance(mask, torch.Tensor)]
    if wrong:
        raise CheckpointError(f"'{source}' compression_sched masks_dict['{wrong[0]}'] is not a tensor")
    return {normalize_module_name(name): mask for name, mask in masks.items() if mask is not None}


def _load_masks(scheduler: CompressionScheduler, masks: Mapping[str, torch.Tensor], source: str,
                final: bool) -> dict[str, torch.Tensor]:
    """Sets the masks that name a parameter of the model now; returns the others (for after the quantizer
    renamed parameters: Distiller named the masks of quantization-aware training as before it).

    Raises:
        CheckpointError: a mask of another shape than its parameter; with ``final``, masks naming no parameter.
    """
    params = {normalize_module_name(name) for name, _ in scheduler.model.named_parameters()}
    now = {name: mask for name, mask in masks.items() if final or name in params}
    fit = mask_fit(scheduler.model, now)
    if not fit.exact:
        raise CheckpointError(f"'{source}' compression_sched does not fit the model after its thinning recipes and "
                              f"quantizer were replayed: it {fit.describe(('mask', 'masks'))}")
    scheduler.init_from_masks_dict(now)
    return {name: mask for name, mask in masks.items() if name not in now}


def _load_weights(model: nn.Module, state_dict: Any, source: str, arch: str) -> None:
    """Loads ``state_dict`` strictly. Raises CheckpointError naming the entries that do not fit."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"'{source}' state_dict is not a model state dict (name -> tensor)")
    fit = state_fit(model.state_dict(), state_dict)
    if not fit.exact:
        raise CheckpointError(f"the state_dict of '{source}' does not fit '{arch}' once its thinning recipes and "
                              f"quantizer are replayed: it {fit.describe()}. Pass the --arch it was trained with")
    model.load_state_dict(normalize_state_dict_keys(state_dict))


def _replay(model: nn.Module, checkpoint: Mapping[str, Any], source: str, arch: str, example: torch.Tensor,
            dropped: list[str]) -> tuple[CompressionScheduler, int, Optional[Quantizer]]:
    """Replays the thinning recipes and the quantizer on ``model`` (recorded in the scheduler returned, with
    the masks), then loads the weights; returns ``(scheduler, number of recipes, quantizer or None)``."""
    scheduler = CompressionScheduler(model)
    recipes = replay_distiller_recipes(model, checkpoint.get("thinning_recipes") or [], scheduler, source)
    masks = _masks(checkpoint, source)
    quantized = checkpoint.get("quantizer_metadata") is not None
    later = _load_masks(scheduler, masks, source, final=not quantized)
    quantizer = None
    if quantized:
        quantizer = replay_distiller_quantizer(model, checkpoint["quantizer_metadata"], scheduler, source, example)
        entry = QUANTIZERS.entry_of(quantizer)
        if masks and entry is not None and not entry.trains:  # record_transform has cleared them
            dropped.append(f"the {len(masks)} mask(s) of compression_sched (after post-training quantization the "
                           f"weights hold integer codes, which masks would corrupt)")
            later = {}
    _load_masks(scheduler, later, source, final=True)
    _load_weights(model, checkpoint["state_dict"], source, arch)
    return scheduler, recipes, quantizer


def _rebuild_optimizer(model: nn.Module, checkpoint: Mapping[str, Any]) -> tuple[Optional[torch.optim.Optimizer],
                                                                                 Optional[str]]:
    """``(optimizer, None)``, ``(None, why it cannot be rebuilt)``, or ``(None, None)`` when there is none.

    Distiller's optimizer was built over ``model.parameters()``: the saved state numbers them in that order.
    """
    saved = checkpoint.get("optimizer_state_dict")
    if saved is None:
        return None, None
    path = reference_path(checkpoint.get("optimizer_type"))
    cls = getattr(torch.optim, path.rpartition(".")[2], None) if path else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        return None, f"its optimizer_type {path or '(missing)'} is not a torch.optim optimizer"
    params = list(model.parameters())
    try:
        groups, state = saved["param_groups"], saved["state"]
        numbers = sorted(index for group in groups for index in group["params"])
    except (KeyError, TypeError):
        return None, "optimizer_state_dict is not an optimizer's state dict"
    if numbers != list(range(len(params))) or not set(state) <= set(numbers):
        return None, f"it holds {len(numbers)} parameters, the converted model has {len(params)}"
    reshaped = [f"{key} {tuple(value.shape)} of parameter {index} {tuple(params[index].shape)}"
                for index, entries in state.items() for key, value in entries.items()
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape]
    if reshaped:
        return None, f"its state has other shapes than the parameters ({reshaped[0]})"
    accepted = inspect.signature(cls).parameters
    try:
        optimizer = cls([{"params": [params[index] for index in group["params"]]} for group in groups],
                        **{key: value for key, value in groups[0].items() if key in accepted and key != "params"})
        optimizer.load_state_dict(saved)
    except (ValueError, TypeError, KeyError) as err:
        return None, f"torch cannot rebuild it: {err}"
    return optimizer, None


def _outputs(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    return [tensor for item in output for tensor in _outputs(item)] if isinstance(output, (list, tuple)) else []


def _reload_difference(path: str, model: nn.Module, arch: str, dataset: str, example: torch.Tensor) -> float:
    """Loads ``path`` into a fresh model; returns the largest difference of its outputs from ``model``'s.

    Raises:
        RuntimeError: the outputs differ (a bug: the converted checkpoint does not reproduce the model).
    """
    fresh = load_checkpoint(create_model(False, dataset, arch, parallel=False, device_ids=CPU), path,
                            expected_arch=arch)[0]
    model.eval()
    fresh.eval()
    with torch.no_grad():
        expected, got = _outputs(model(example)), _outputs(fresh(example))
    difference = max((float((a - b).abs().max()) for a, b in zip(expected, got)), default=0.0)
    if len(expected) != len(got) or not all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(expected, got)):
        raise RuntimeError(f"self-check failed: the converted checkpoint reloads into a model whose outputs differ "
                           f"by up to {difference:g} from the converted model's")
    return difference


def _write_verified(new_path: _Path, save: Callable[[str], str], check: Callable[[str], float]) -> float:
    """Saves the checkpoint beside ``new_path`` (``save(directory)`` returns its path), runs ``check(path)``
    (the self-check), then moves the file to ``new_path``; returns what ``check`` returned."""
    target = os.path.abspath(new_path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target), prefix=".convert_") as tmp:
        written = save(tmp)
        difference = check(written)
        os.replace(written, target)
    return difference


def convert_checkpoint(old_path: _Path, new_path: _Path, arch: Optional[str] = None,
                       dataset: Optional[str] = None) -> dict[str, Any]:
    """Converts Distiller's checkpoint ``old_path`` into this library's format at ``new_path`` (see above).

    Args:
        old_path: a checkpoint written by Distiller's ``save_checkpoint``. Convert trusted files only.
        new_path: where to write the converted checkpoint (loads with ``torch.load(weights_only=True)`` and
            :func:`~distiller.apputils.load_checkpoint`); written only when the self-check passes.
        arch: the architecture, when the checkpoint's ``arch`` is missing or named otherwise here.
        dataset: a dataset the architecture is built for (default: the first one).
    Returns:
        a summary: ``output``, ``arch``, ``dataset``, ``epoch``, ``thinning_recipes`` (count), ``quantizer``
        (class name or None), ``masks`` (count), ``optimizer`` (class name or None), ``extras`` (keys),
        ``dropped`` (what was not converted, and why) and ``max_abs_difference`` (of the self-check).
    Raises:
        InputFileError: ``old_path`` does not exist.
        CheckpointError: not a Distiller checkpoint; an unknown recorded architecture or quantizer; thinning
            recipes, masks or weights that do not fit the architecture (naming the entries).
        ArgumentError: an unknown ``arch`` or ``dataset``, or ``new_path`` cannot be written.

    Example:
        >>> summary = convert_checkpoint("distiller_run/checkpoint.pth.tar", "converted.pth.tar")
        >>> model, scheduler, optimizer, start_epoch = load_checkpoint(
        ...     create_model(False, summary["dataset"], summary["arch"]), "converted.pth.tar")
    """
    source = os.fspath(old_path)
    if os.path.isdir(new_path):
        raise ArgumentError(f"'{os.fspath(new_path)}' is a directory: name the converted checkpoint's file")
    checkpoint = read_distiller_checkpoint(old_path)
    if "distiller_version" in checkpoint:
        raise CheckpointError(f"'{source}' is already in this library's format: load it with "
                              f"distiller.apputils.load_checkpoint, no conversion needed")
    arch, dataset = _architecture(checkpoint, arch, dataset, source)
    model = create_model(False, dataset, arch, parallel=False, device_ids=CPU)
    example = torch.randn(dataset_input_shape(dataset), generator=torch.Generator().manual_seed(0))
    dropped: list[str] = []
    scheduler, recipes, quantizer = _replay(model, checkpoint, source, arch, example, dropped)
    optimizer, why = _rebuild_optimizer(model, checkpoint)
    if why:
        dropped.append(f"the optimizer state ({why})")
    extras = _extras(checkpoint, dropped)
    epoch = checkpoint.get("epoch")
    epoch = int(epoch) if isinstance(epoch, (int, np.integer)) else -1  # Distiller read no epoch as "start at 0"
    for note in dropped:
        msglogger.warning("Not converted from '%s': %s", source, note)
    try:
        difference = _write_verified(
            new_path, lambda where: save_checkpoint(epoch, arch, model, optimizer, scheduler, extras, dir=where),
            lambda written: _reload_difference(written, model, arch, dataset, example))
    except OSError as err:
        raise ArgumentError(f"cannot write '{os.fspath(new_path)}': {err.strerror or err}") from err
    return {"output": os.fspath(new_path), "arch": arch, "dataset": dataset, "epoch": epoch,
            "thinning_recipes": recipes, "quantizer": type(quantizer).__name__ if quantizer is not None else None,
            "masks": sum(masker.mask is not None for masker in scheduler.zeros_mask_dict.values()),
            "optimizer": type(optimizer).__name__ if optimizer is not None else None, "extras": sorted(extras, key=str),
            "dropped": dropped, "max_abs_difference": difference}


def get_args_parser() -> argparse.ArgumentParser:
    """The converter's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m distiller.apputils.convert_checkpoint",
        description="Convert a checkpoint written by IntelLabs Distiller (pickled classes) into this library's "
                    "weights-only checkpoint, replaying its thinning recipes and quantizer. The old file is "
                    "unpickled: convert only files you trust.")
    parser.add_argument("old", metavar="OLD.pth.tar", help="the Distiller checkpoint")
    parser.add_argument("new", metavar="NEW.pth.tar", help="where to write the converted checkpoint")
    parser.add_argument("--arch", "-a", help="architecture (default: the one the checkpoint records)")
    parser.add_argument("--dataset", help="a dataset the architecture is built for (default: its first)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress; show tracebacks of errors")
    return parser


def _run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    summary = convert_checkpoint(args.old, args.new, arch=args.arch, dataset=args.dataset)
    print(f"Wrote {summary['output']}: {summary['arch']} ({summary['dataset']}), epoch {summary['epoch']}, "
          f"{summary['thinning_recipes']} thinning recipe(s), quantizer {summary['quantizer']}, "
          f"{summary['masks']} mask(s), optimizer {summary['optimizer']}, extras {summary['extras']}")
    print(f"Self-check: the reloaded checkpoint's outputs differ by at most {summary['max_abs_difference']:g}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the converter; returns the exit status (2 for user errors, with one line on stderr)."""
    return run_cli(_run, get_args_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
