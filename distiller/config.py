"""Compression schedules from YAML: parse, validate everything, then build the scheduler.

A schedule has sections of named instances (``pruners``, ``regularizers``, ``quantizers``,
``lr_schedulers``, ``extensions``; each ``name: {class: X, **args}``) and a ``policies`` list that
schedules them by epoch. Distiller's format loads unchanged::

    version: 1
    pruners:
      conv_pruner:
        class: AutomatedGradualPruner
        initial_sparsity: 0.05
        final_sparsity: 0.80
        weights: [conv1.weight, 'layer\\d+\\.\\d+\\.conv\\d\\.weight']
    lr_schedulers:
      lr_decay: {class: ExponentialLR, gamma: 0.95}
    policies:
      - pruner: {instance_name: conv_pruner}
        starting_epoch: 0
        ending_epoch: 30
        frequency: 2
      - lr_scheduler: {instance_name: lr_decay}
        starting_epoch: 0
        ending_epoch: 50
        frequency: 1

Every user error (unknown class or argument, a weight name that matches nothing, a policy naming an
undefined instance, bad epochs, malformed YAML) raises :class:`~distiller.errors.ScheduleError` naming
the file, the YAML path and line, before the model or optimizer is touched. So do schedules that would
do nothing (empty, or instances without policies) and schedules with more than one quantizer. Only the
user-error family (:class:`~distiller.errors.UserError`) raised by a class's own input checks becomes a
ScheduleError; any other exception from a constructor is a bug and propagates unchanged.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any, Optional, Union

import pandas as pd
import torch
import yaml

from . import policy as _builtin_sections  # noqa: F401  (registers the built-in schedule sections)
from .errors import ArgumentError, ScheduleError, UnmatchedNameError, UserError, suggest
from .masking import named_scheduled_parameters
from .registry import SECTIONS, Section, refuse_untrainable
from .schedule_conflicts import ScheduledInstance, find_conflict, moved_targets_message
from .schedule_spec import PolicySchedule
from .scheduler import CompressionScheduler
from .spec import build_record
from .utils import match_names

msglogger = logging.getLogger(__name__)

__all__ = ["file_config", "dict_config", "describe_schedule", "load_schedule_file",
           "config_component_from_file_by_class"]

_SCHEDULE_KEYS = ("starting_epoch", "ending_epoch", "frequency", "epochs")
Path = tuple[Union[str, int], ...]


def _section_of_policy_key(key: str) -> Optional[Section]:
    return next((section for section in SECTIONS.values() if section.policy_key == key), None)


@dataclass(frozen=True)
class _Plan:
    """A validated policy entry: which section and instance, its typed args and its schedule."""
    index: int
    section: Section
    instance_name: str
    args: Any
    schedule: PolicySchedule


class _Source:
    """Where a schedule came from: the file name, the line of each YAML path and the YAML text (None when
    the schedule cannot be written as YAML)."""

    def __init__(self, filename: Union[str, PathLike[str], None] = None, lines: Optional[dict[Path, int]] = None,
                 text: Optional[str] = None) -> None:
        self.filename, self.lines, self.text = filename, lines or {}, text

    def error(self, message: str, path: Path = ()) -> ScheduleError:
        path = tuple(path)
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        return ScheduleError(message, filename=self.filename, path=_format_path(path) or None, line=line)

    def argument_error(self, err: ArgumentError, path: Path, owner: str = "") -> ScheduleError:
        """``err`` at its argument's YAML path (``path`` + argument + place inside the value)."""
        where = path + ((err.argument,) if err.argument else ()) + err.location
        return self.error(f"{owner}: {err}" if owner and not str(err).startswith(owner) else str(err), where)


def _format_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _node_lines(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            # an integer key (e.g. an input index of input_overrides) is an int in the loaded schedule's paths too
            integer = key.tag == "tag:yaml.org,2002:int" and key.value.isdigit()
            child = path + (int(key.value) if integer else key.value,)
            _node_lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, path + (index,), out)


def load_schedule_file(filename: Union[str, PathLike[str]]) -> tuple[Any, _Source]:
    """Reads a YAML schedule safely; returns ``(schedule_dict, source)`` with line numbers for errors."""
    try:
        with open(filename, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ScheduleError("schedule file not found: check the path passed to --compress/file_config",
                            filename=filename) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        sched = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScheduleError(f"malformed YAML: {where}{getattr(err, 'problem', None) or err}",
                            filename=filename) from None
    lines: dict[Path, int] = {}
    if root is not None:
        _node_lines(root, (), lines)
    return sched, _Source(filename, lines, text)


def file_config(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                filename: Union[str, PathLike[str]], scheduler: Optional[CompressionScheduler] = None,
                resumed_epoch: Optional[int] = None) -> CompressionScheduler:
    """Builds (or extends) a :class:`CompressionScheduler` from a YAML schedule file."""
    sched, source = load_schedule_file(filename)
    return _configure(model, optimizer, sched, scheduler, resumed_epoch, source)


def dict_config(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], sched_dict: Mapping[str, Any],
                scheduler: Optional[CompressionScheduler] = None,
                resumed_epoch: Optional[int] = None) -> CompressionScheduler:
    """Builds (or extends) a :class:`CompressionScheduler` from an already-parsed schedule dict."""
    try:
        text: Optional[str] = yaml.safe_dump(sched_dict, sort_keys=False)
    except yaml.YAMLError:  # values YAML cannot write (Python objects): the schedule is not stored
        text = None
    return _configure(model, optimizer, sched_dict, scheduler, resumed_epoch, _Source(text=text))


# ------------------------------------------------------------------------------------ validation
def _check_mapping(value: Any, source: _Source, path: Path, what: str) -> None:
    if not isinstance(value, dict):
        raise source.error(f"{what} must be a mapping, got {type(value).__name__}", path)


def _bind_arguments(cls: type, args: dict[str, Any], injected: dict[str, Any], section: Section, source: _Source,
                    path: Path) -> dict[str, Any]:
    """Checks the *names* in ``args`` against ``cls``'s constructor; returns the full keyword arguments
    (values are checked by the constructor's annotations, see :mod:`distiller.spec`)."""
    signature = inspect.signature(cls)
    params = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = dict(args)
    for key in args:
        if key in section.injected and key in params:
            raise source.error(f"'{key}' is supplied by distiller and must not be given in the schedule",
                               path + (key,))
        if key not in params and not accepts_any:
            valid = [n for n in params if n not in section.injected and n != "self"]
            hint = suggest(key, valid)
            raise source.error(f"{cls.__name__} has no argument '{key}'"
                               + (f"; did you mean {hint}?" if hint else "") + f" (valid: {', '.join(valid)})",
                               path + (key,))
    for key, value in injected.items():
        if key in params:
            kwargs[key] = value
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise source.error(f"{cls.__name__}: {err}", path) from None
    return kwargs


def _target_path(args: dict[str, Any], pattern: str, path: Path) -> Path:
    """The YAML path of ``pattern`` inside an instance's arguments (a list item or a mapping key)."""
    for key, value in args.items():
        if isinstance(value, (list, tuple)) and pattern in value:
            return path + (key, list(value).index(pattern))
        if isinstance(value, dict) and pattern in value:
            return path + (key, pattern)
    return path


def _instantiate(class_name: str, section: Section, args: dict[str, Any], injected: dict[str, Any],
                 source: _Source, path: Path) -> Any:
    """Builds one instance of the registered ``class_name``; its constructor's user errors become ScheduleErrors
    at ``path``."""
    try:
        cls = section.registry.get(class_name)
    except KeyError as err:
        raise source.error(err.args[0], path + ("class",)) from None
    kwargs = _bind_arguments(cls, args, injected, section, source, path)
    try:
        return cls(**kwargs)
    except ArgumentError as err:  # a value the constructor's annotations or checks refuse
        raise source.argument_error(err, path, class_name) from None
    except UserError as err:  # the constructor's other input checks; anything else is a bug
        raise source.error(f"{class_name}: {err}", path) from None


def config_component_from_file_by_class(model: torch.nn.Module, filename: Union[str, PathLike[str]],
                                        class_name: str, **extra_args: Any) -> Any:
    """Builds the one instance of class ``class_name`` that a YAML file defines, e.g. the
    ``PostTrainLinearQuantizer`` of a ``--qe-config-file``; the file's ``policies`` are ignored.

    Args:
        model: the model the instance works on (given to constructors that take ``model``).
        filename: the YAML file (any schedule section: ``quantizers``, ``pruners``, ...).
        class_name: the registered class to look for.
        **extra_args: constructor arguments that override the file's.
    Returns:
        the instance (its instance name is the one in the file).
    Raises:
        ScheduleError: no such file, malformed YAML, no or several instances of ``class_name``, or bad arguments
            (naming the file, the YAML path and the line).

    Example:
        >>> quantizer = config_component_from_file_by_class(model, 'ptq.yaml', 'PostTrainLinearQuantizer')
    """
    sched, source = load_schedule_file(filename)
    _check_mapping(sched, source, (), "the file")
    found = [(key, section, name, spec) for key, section in SECTIONS.items()
             for name, spec in (sched.get(key) or {}).items()
             if isinstance(spec, dict) and spec.get("class") == class_name]
    if len(found) != 1:
        classes = sorted({str(spec["class"]) for key in SECTIONS for spec in (sched.get(key) or {}).values()
                          if isinstance(spec, dict) and spec.get("class")})
        raise source.error(f"expected exactly one instance of class {class_name}, found {len(found)} (classes "
                           f"defined: {', '.join(map(str, classes)) or 'none'})", ())
    key, section, name, spec = found[0]
    args = {k: v for k, v in spec.items() if k != "class"} | extra_args
    return _instantiate(class_name, section, args, {"name": name, "model": model, "optimizer": None}, source,
                        (key, name))


def _build_instances(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], sched: dict[str, Any],
                     source: _Source) -> dict[str, dict[str, Any]]:
    instances: dict[str, dict[str, Any]] = {key: {} for key in SECTIONS}
    param_names = [name for name, _ in named_scheduled_parameters(model)]
    for key, section in SECTIONS.items():
        entries = sched.get(key) or {}
        _check_mapping(entries, source, (key,), f"'{key}'")
        for name, spec in entries.items():
            path = (key, name)
            _check_mapping(spec, source, path, f"instance '{name}'")
            if "class" not in spec:
                raise source.error(f"instance '{name}' has no 'class'", path)
            args = {k: v for k, v in spec.items() if k != "class"}
            injected = {"name": name, "model": model, "optimizer": optimizer}
            instance = _instantiate(spec["class"], section, args, injected, source, path)
            if hasattr(instance, "targets") and key in ("pruners", "regularizers"):
                try:
                    match_names(instance.targets(), param_names, "parameter")
                except UnmatchedNameError as err:
                    raise source.error(str(err), _target_path(args, err.pattern, path)) from None
            instances[key][name] = instance
    return instances


def _parse_policy(entry: Any, index: int, instances: dict[str, dict[str, Any]], source: _Source) -> _Plan:
    path: Path = ("policies", index)
    _check_mapping(entry, source, path, "a policy")
    policy_keys = [section.policy_key for section in SECTIONS.values()]
    kinds = [k for k in entry if k in policy_keys]
    unknown = [k for k in entry if k not in policy_keys and k not in _SCHEDULE_KEYS]
    if unknown:
        hint = suggest(unknown[0], policy_keys + list(_SCHEDULE_KEYS))
        raise source.error(f"unknown policy key '{unknown[0]}'" + (f"; did you mean {hint}?" if hint else "")
                           + f" (valid: {', '.join(sorted(policy_keys) + sorted(_SCHEDULE_KEYS))})",
                           path + (unknown[0],))
    if len(kinds) != 1:
        raise source.error(f"a policy needs exactly one of {', '.join(policy_keys)}; found {kinds or 'none'}", path)
    kind = kinds[0]
    section = _section_of_policy_key(kind)
    assert section is not None  # kind was found among the sections' policy keys
    body = entry[kind]
    _check_mapping(body, source, path + (kind,), f"'{kind}'")
    instance_name = body.get("instance_name")
    defined = instances[section.key]
    if instance_name not in defined:
        hint = suggest(instance_name, defined)
        raise source.error(f"{kind} instance '{instance_name}' is not defined under '{section.key}'"
                           + (f"; did you mean {hint}?" if hint else
                              f" (defined: {', '.join(defined) or 'none'})"), path + (kind, "instance_name"))
    extra = sorted(set(body) - {"instance_name", "args"})
    if extra:
        raise source.error(f"unknown key '{extra[0]}' (a policy's {kind} takes instance_name and args)",
                           path + (kind, extra[0]))
    try:
        refuse_untrainable(section.registry, defined[instance_name])
    except ArgumentError as err:
        raise source.error(str(err), path + (kind, "instance_name")) from None
    args = _policy_args(section, body.get("args") or {}, source, path + (kind, "args"))
    return _Plan(index, section, instance_name, args, _parse_schedule(entry, source, path))


def _policy_args(section: Section, args: Any, source: _Source, path: Path) -> Any:
    """The policy entry's ``args`` as the section's typed record (None for sections without args)."""
    _check_mapping(args, source, path, f"{section.policy_key} args")
    if section.policy_args is None:
        if args:
            raise source.error(f"unknown {section.policy_key} argument '{next(iter(args))}' (valid: none)",
                               path + (next(iter(args)),))
        return None
    try:
        return build_record(section.policy_args, args, f"{section.policy_key} policy")
    except ArgumentError as err:
        raise source.argument_error(err, path) from None


def _parse_schedule(entry: dict[str, Any], source: _Source, path: Path) -> PolicySchedule:
    if "epochs" in entry and {"starting_epoch", "ending_epoch", "frequency"} & set(entry):
        raise source.error("give either 'epochs' or starting_epoch/ending_epoch/frequency, not both", path)
    try:
        return PolicySchedule(**{key: entry[key] for key in _SCHEDULE_KEYS if key in entry})
    except ArgumentError as err:
        raise source.argument_error(err, path) from None


def _validate(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], sched: Any,
              source: _Source) -> tuple[dict[str, dict[str, Any]], list[_Plan]]:
    if sched is None:
        sched = {}
    if not isinstance(sched, dict):
        raise source.error(f"a schedule must be a mapping of sections, got {type(sched).__name__}")
    allowed = set(SECTIONS) | {"policies", "version"}
    for key in sched:
        if key not in allowed:
            hint = suggest(key, allowed)
            raise source.error(f"unknown section '{key}'" + (f"; did you mean {hint}?" if hint else "")
                               + f" (valid: {', '.join(sorted(allowed))})", (key,))
    if sched.get("version", 1) != 1:
        raise source.error(f"unsupported schedule version {sched['version']!r} (supported: 1)", ("version",))
    _check_single_quantizer(sched, source)
    instances = _build_instances(model, optimizer, sched, source)
    entries = sched.get("policies") or []
    if not isinstance(entries, list):
        raise source.error("'policies' must be a list", ("policies",))
    plans = [_parse_policy(entry, i, instances, source) for i, entry in enumerate(entries)]
    if not plans:
        raise _no_policies_error(instances, source)
    used = {(plan.section.key, plan.instance_name) for plan in plans}
    for key, named in instances.items():
        for name in named:
            if (key, name) not in used:
                msglogger.warning("%s instance '%s' is defined but no policy schedules it", key, name)
    conflict = find_conflict(model, _scheduled_instances(instances, plans))
    if conflict is not None:
        raise source.error(conflict[1], ("policies", conflict[0]))
    return instances, plans


def _scheduled_instances(instances: dict[str, dict[str, Any]], plans: list[_Plan]) -> list[ScheduledInstance]:
    return [ScheduledInstance(plan.index, plan.section.key, plan.instance_name,
                              instances[plan.section.key][plan.instance_name]) for plan in plans]


def _check_single_quantizer(sched: dict[str, Any], source: _Source) -> None:
    """Refuses a schedule with several quantizers: each would replace the model's layers for itself, and
    no composition of two quantizers on one model is defined."""
    quantizers = sched.get("quantizers")
    if isinstance(quantizers, dict) and len(quantizers) > 1:
        names = list(quantizers)
        raise source.error(f"the schedule defines {len(names)} quantizers ({', '.join(repr(n) for n in names)}), "
                           "but a model is quantized by one quantizer (stacking quantizers is not defined): keep "
                           "one of them", ("quantizers", names[1]))


def _no_policies_error(instances: dict[str, dict[str, Any]], source: _Source) -> ScheduleError:
    """The error for a schedule without policies, which would run as plain training."""
    defined = [f"{section}.{name}" for section, named in instances.items() for name in named]
    if not defined:
        return source.error("the schedule is empty: it defines no policies, so it would compress nothing; add "
                            "'policies' that schedule pruners/regularizers/quantizers, or do not pass a schedule")
    return source.error(f"the schedule defines {', '.join(defined)} but no policies, so it would compress "
                        "nothing: add a 'policies' list that schedules them by epoch", ("policies",))


# ------------------------------------------------------------------------------------- building
def _fast_forward(lr_scheduler: Any, resumed_epoch: int) -> None:
    """Steps a freshly built LR scheduler past the epochs a resumed run already did (exact state, when
    the checkpoint has it, is restored afterwards by the scheduler)."""
    if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(resumed_epoch + 1):
            lr_scheduler.step()


def _configure(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], sched: Any,
               scheduler: Optional[CompressionScheduler], resumed_epoch: Optional[int],
               source: _Source) -> CompressionScheduler:
    instances, plans = _validate(model, optimizer, sched, source)
    if scheduler is None:
        scheduler = CompressionScheduler(model)
    previous_yaml = scheduler.schedule_yaml if scheduler.policies else ""
    quantizer: Optional[ScheduledInstance] = None  # once it has prepared the model
    added = []
    for plan, item in zip(plans, _scheduled_instances(instances, plans)):
        if item.section == "lr_schedulers" and resumed_epoch is not None:
            _fast_forward(item.instance, resumed_epoch)
        try:
            policy = plan.section.make_policy(item.instance, plan.args)
            scheduler.add_policy(policy, name=plan.instance_name, schedule=plan.schedule)
        except UnmatchedNameError as err:
            if quantizer is None or item.section not in ("pruners", "regularizers"):
                raise source.error(str(err), ("policies", plan.index)) from None
            # its weights matched the model (checked by _build_instances) before the quantizer prepared it
            message = moved_targets_message(item, [err.pattern], quantizer)
            raise source.error(message, ("policies", plan.index)) from None
        except UserError as err:  # e.g. a quantizer that cannot prepare this model
            raise source.error(str(err), ("policies", plan.index)) from None
        if item.section == "quantizers":
            quantizer = item
        added.append((item, policy))
    if quantizer is not None:
        _check_targets_kept(model, added, quantizer, source)
    scheduler.schedule_yaml = _append_yaml_document(previous_yaml, source.text)
    return scheduler


def _check_targets_kept(model: torch.nn.Module, added: list[tuple[ScheduledInstance, Any]],
                        quantizer: ScheduledInstance, source: _Source) -> None:
    """Refuses policies that resolved their parameter names before ``quantizer`` prepared the model and moved them."""
    names = {name for name, _ in named_scheduled_parameters(model)}
    for item, policy in added:
        missing = [name for name in getattr(policy, "param_names", None) or [] if name not in names]
        if missing:
            raise source.error(moved_targets_message(item, missing, quantizer), ("policies", item.index))


def _append_yaml_document(stream: Optional[str], text: Optional[str]) -> Optional[str]:
    """``stream`` (YAML documents) followed by ``text`` as one more document; None when either is unknown
    (policies added without a schedule, or values YAML cannot write)."""
    if stream is None or text is None:
        return None
    return f"{stream.rstrip()}\n---\n{text}" if stream else text


def describe_schedule(model: torch.nn.Module, filename: Union[str, PathLike[str]],
                      optimizer: Optional[torch.optim.Optimizer] = None) -> pd.DataFrame:
    """The plan of a schedule file, without changing the model: one row per (policy, parameter).

    Returns:
        a pandas DataFrame with columns ``policy``, ``kind``, ``instance``, ``class``, ``parameter`` and
        ``epochs`` (e.g. ``0..29 every 2``); print it with ``df.to_markdown()``.
    """
    sched, source = load_schedule_file(filename)
    if optimizer is None:  # LR schedulers need one to be built; a throwaway never touches the model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    instances, plans = _validate(model, optimizer, sched, source)
    names = [n for n, _ in named_scheduled_parameters(model)]
    rows = []
    for plan in plans:
        instance = instances[plan.section.key][plan.instance_name]
        start, end, every = plan.schedule.bounds()
        when = ", ".join(str(e) for e in plan.schedule.epoch_list()) if every is None else \
            f"{start}..{end - 1} every {every}"
        kind = plan.section.policy_key
        targets = ["(all modules)" if kind == "quantizer" else "(optimizer)"]
        if hasattr(instance, "targets") and kind in ("pruner", "regularizer"):
            resolved = match_names(instance.targets(), names)
            targets = list(dict.fromkeys(n for hits in resolved.values() for n in hits))
        for target in targets:
            rows.append({"policy": plan.index, "kind": kind, "instance": plan.instance_name,
                         "class": type(instance).__name__, "parameter": target, "epochs": when})
    return pd.DataFrame(rows, columns=["policy", "kind", "instance", "class", "parameter", "epochs"])
