"""Resuming the compression schedule stored in a checkpoint.

``file_config`` / ``dict_config`` keep the schedule's YAML text in the scheduler (``schedule_yaml``) and
``save_checkpoint`` stores it with the scheduler's state, so a resumed run rebuilds the same policies
(AGP, LR decay...) from the checkpoint alone and continues them exactly. A schedule file given on resume
must describe the same schedule: continuing policy states with other settings would mix two runs.
"""
import logging
from typing import Optional

import torch
import yaml

from ..config import _format_path, dict_config, file_config, load_schedule_file
from ..errors import CheckpointError, ScheduleError, first_few
from ..scheduler import CompressionScheduler

msglogger = logging.getLogger(__name__)

__all__ = ["resume_schedule"]

_ABSENT = object()


def _schedule_differences(stored: list, given: list) -> list:
    """Where two schedules (lists of parsed YAML documents) differ: ``(yaml_path, stored_value,
    given_value)`` triples in document order (``_ABSENT`` for a missing key). Only values count, not
    formatting or comments."""
    if len(stored) != len(given):
        return [("the number of schedule documents", len(stored), len(given))]
    found = []
    for index, (old, new) in enumerate(zip(stored, given)):
        prefix = (f"document {index + 1}",) if len(stored) > 1 else ()
        found += [(_format_path(prefix + path), a, b) for path, a, b in _value_differences(old, new, ())]
    return found


def _value_differences(old, new, path):
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [key for key in new if key not in old]
        return [found for key in keys
                for found in _value_differences(old.get(key, _ABSENT), new.get(key, _ABSENT), path + (key,))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [found for index, (a, b) in enumerate(zip(old, new))
                for found in _value_differences(a, b, path + (index,))]
    return [] if old == new else [(path, old, new)]


def _show(value) -> str:
    if value is _ABSENT:
        return "absent"
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip().removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _stored_documents(text: str) -> list:
    return [document for document in yaml.safe_load_all(text) if document is not None]


def resume_schedule(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    scheduler: CompressionScheduler, resumed_epoch: Optional[int],
                    schedule_file: Optional[str] = None, chkpt_file: str = "the checkpoint") -> CompressionScheduler:
    """Rebuilds the policies of a resumed run, so training continues where the checkpoint left it.

    Args:
        model, optimizer, scheduler: as returned by :func:`~distiller.apputils.load_checkpoint`.
        resumed_epoch: the last epoch the checkpoint completed (None before the first), to fast-forward
            LR schedulers.
        schedule_file: optional YAML schedule; it must be the one stored in the checkpoint. Required only
            for checkpoints that do not store their schedule.
        chkpt_file: the checkpoint's path, for messages.
    Returns:
        ``scheduler``, with the policies added and their saved states restored.
    Raises:
        CheckpointError: ``schedule_file`` differs from the stored schedule (naming where), or the
            checkpoint holds policy states but no schedule and none is given.
        ScheduleError: the schedule file is malformed or does not apply to the model.

    Example:
        >>> model, scheduler, optimizer, start_epoch = load_checkpoint(model, "checkpoint.pth.tar")
        >>> scheduler = resume_schedule(model, optimizer, scheduler, start_epoch - 1)
    """
    stored = scheduler.schedule_yaml
    if schedule_file is not None:
        if stored is not None:
            given, _ = load_schedule_file(schedule_file)
            _check_same_schedule(_stored_documents(stored), [given], schedule_file, chkpt_file)
        scheduler = file_config(model, optimizer, schedule_file, scheduler, resumed_epoch)
    elif stored is not None:
        try:
            for document in _stored_documents(stored):
                dict_config(model, optimizer, document, scheduler, resumed_epoch)
        except ScheduleError as err:
            raise CheckpointError(f"the schedule stored in '{chkpt_file}' does not build: {err}") from err
        scheduler.schedule_yaml = stored  # the original text, comments included
        msglogger.info("Resumed the compression schedule stored in '%s' (%d policies)", chkpt_file,
                       len(scheduler.state_dict()["policies"]))
    _check_states_claimed(scheduler, chkpt_file)
    return scheduler


def _check_states_claimed(scheduler: CompressionScheduler, chkpt_file: str) -> None:
    """Every policy whose state the checkpoint holds must run again: continuing part of a run mixes two runs."""
    unclaimed = scheduler.unclaimed_policy_states
    if unclaimed:
        names = ", ".join(f"'{name}' ({cls})" for name, cls in unclaimed.items())
        where = "they are not in its stored schedule" if scheduler.schedule_yaml is not None else \
            "it has no schedule stored (it was saved without one)"
        raise CheckpointError(f"'{chkpt_file}' holds the state of policies this run does not schedule: {names}; "
                              f"{where}. Add them again (the run's schedule file with --compress, or the "
                              "flags that added them, e.g. the --kd-* flags for 'knowledge_distillation'), or start "
                              "over from epoch 0 (--reset-optimizer)")


def _check_same_schedule(stored: list, given: list, schedule_file: str, chkpt_file: str) -> None:
    differences = _schedule_differences(stored, given)
    if not differences:
        return
    shown = first_few([f"{path or 'the schedule'}: {_show(old)} in the checkpoint, {_show(new)} in the file"
                       for path, old, new in differences], first=3, separator="; ")
    raise CheckpointError(f"the schedule '{schedule_file}' differs from the one stored in '{chkpt_file}' "
                          f"({shown}): drop the schedule file (--compress) to continue the stored schedule, "
                          f"or start a new run from the checkpoint's weights (--exp-load-weights-from "
                          f"{chkpt_file} --compress {schedule_file})")
