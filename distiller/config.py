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
import inspect
import logging
import warnings

import pandas as pd
import torch
import yaml

from . import registry
from .errors import ScheduleError, UnmatchedNameError, UserError, suggest
from .policy import LRPolicy, PruningPolicy, QuantizationPolicy, RegularizationPolicy
from .scheduler import CompressionScheduler
from .utils import match_names

msglogger = logging.getLogger(__name__)

__all__ = ["file_config", "dict_config", "describe_schedule", "load_schedule_file"]

#: policy-entry key -> the section its instance_name refers to
POLICY_KINDS = {"pruner": "pruners", "regularizer": "regularizers", "quantizer": "quantizers",
                "lr_scheduler": "lr_schedulers", "extension": "extensions"}
_SCHEDULE_KEYS = {"starting_epoch", "ending_epoch", "frequency", "epochs"}
_INJECTED = ("name", "model", "optimizer")


class _Source:
    """Where a schedule came from: the file name, the line of each YAML path and the YAML text (None when
    the schedule cannot be written as YAML)."""

    def __init__(self, filename=None, lines=None, text=None):
        self.filename, self.lines, self.text = filename, lines or {}, text

    def error(self, message, path=()):
        path = tuple(path)
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        return ScheduleError(message, filename=self.filename, path=_format_path(path) or None, line=line)


def _format_path(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _node_lines(node, path, out):
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            _node_lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, path + (index,), out)


def load_schedule_file(filename):
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
    lines = {}
    if root is not None:
        _node_lines(root, (), lines)
    return sched, _Source(filename, lines, text)


def file_config(model, optimizer, filename, scheduler=None, resumed_epoch=None):
    """Builds (or extends) a :class:`CompressionScheduler` from a YAML schedule file."""
    sched, source = load_schedule_file(filename)
    return _configure(model, optimizer, sched, scheduler, resumed_epoch, source)


def dict_config(model, optimizer, sched_dict, scheduler=None, resumed_epoch=None):
    """Builds (or extends) a :class:`CompressionScheduler` from an already-parsed schedule dict."""
    try:
        text = yaml.safe_dump(sched_dict, sort_keys=False)
    except yaml.YAMLError:  # values YAML cannot write (Python objects): the schedule is not stored
        text = None
    return _configure(model, optimizer, sched_dict, scheduler, resumed_epoch, _Source(text=text))


# ------------------------------------------------------------------------------------ validation
def _check_mapping(value, source, path, what):
    if not isinstance(value, dict):
        raise source.error(f"{what} must be a mapping, got {type(value).__name__}", path)


def _bind_arguments(cls, args, injected, source, path):
    """Checks ``args`` against ``cls``'s constructor; returns the full keyword arguments."""
    signature = inspect.signature(cls)
    params = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = dict(args)
    for key in args:
        if key in _INJECTED and key in params:
            raise source.error(f"'{key}' is supplied by distiller and must not be given in the schedule",
                               path + (key,))
        if key not in params and not accepts_any:
            valid = [n for n in params if n not in _INJECTED and n != "self"]
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


def _target_path(args, pattern, path):
    """The YAML path of ``pattern`` inside an instance's arguments (a list item or a mapping key)."""
    for key, value in args.items():
        if isinstance(value, (list, tuple)) and pattern in value:
            return path + (key, list(value).index(pattern))
        if isinstance(value, dict) and pattern in value:
            return path + (key, pattern)
    return path


def _build_instances(model, optimizer, sched, source):
    instances = {section: {} for section in registry.SECTIONS}
    param_names = [name for name, _ in model.named_parameters()]
    for section, reg in registry.SECTIONS.items():
        entries = sched.get(section) or {}
        _check_mapping(entries, source, (section,), f"'{section}'")
        for name, spec in entries.items():
            path = (section, name)
            _check_mapping(spec, source, path, f"instance '{name}'")
            if "class" not in spec:
                raise source.error(f"instance '{name}' has no 'class'", path)
            try:
                cls = reg.get(spec["class"])
            except KeyError as err:
                raise source.error(err.args[0], path + ("class",)) from None
            args = {k: v for k, v in spec.items() if k != "class"}
            kwargs = _bind_arguments(cls, args, {"name": name, "model": model, "optimizer": optimizer},
                                     source, path)
            try:
                instance = cls(**kwargs)
            except UserError as err:  # the constructor's input checks; anything else is a bug
                raise source.error(f"{spec['class']}: {err}", path) from None
            if hasattr(instance, "targets") and section in ("pruners", "regularizers"):
                try:
                    match_names(instance.targets(), param_names, "parameter")
                except UnmatchedNameError as err:
                    raise source.error(str(err), _target_path(args, err.pattern, path)) from None
            instances[section][name] = instance
    return instances


def _parse_policy(entry, index, instances, source):
    path = ("policies", index)
    _check_mapping(entry, source, path, "a policy")
    kinds = [k for k in entry if k in POLICY_KINDS]
    unknown = [k for k in entry if k not in POLICY_KINDS and k not in _SCHEDULE_KEYS]
    if unknown:
        raise source.error(f"unknown policy key '{unknown[0]}'; valid: "
                           f"{', '.join(sorted(POLICY_KINDS) + sorted(_SCHEDULE_KEYS))}", path + (unknown[0],))
    if len(kinds) != 1:
        raise source.error(f"a policy needs exactly one of {', '.join(POLICY_KINDS)}; found {kinds or 'none'}", path)
    kind = kinds[0]
    body = entry[kind]
    _check_mapping(body, source, path + (kind,), f"'{kind}'")
    instance_name = body.get("instance_name")
    defined = instances[POLICY_KINDS[kind]]
    if instance_name not in defined:
        hint = suggest(instance_name, defined)
        raise source.error(f"{kind} instance '{instance_name}' is not defined under '{POLICY_KINDS[kind]}'"
                           + (f"; did you mean {hint}?" if hint else
                              f" (defined: {', '.join(defined) or 'none'})"), path + (kind, "instance_name"))
    extra = sorted(set(body) - {"instance_name", "args"})
    if extra:
        raise source.error(f"unknown key '{extra[0]}' (a policy's {kind} takes instance_name and args)",
                           path + (kind, extra[0]))
    return kind, instance_name, body.get("args") or {}, _parse_epochs(entry, source, path)


def _parse_epochs(entry, source, path):
    if "epochs" in entry:
        if {"starting_epoch", "ending_epoch", "frequency"} & set(entry):
            raise source.error("give either 'epochs' or starting_epoch/ending_epoch/frequency, not both", path)
        epochs = entry["epochs"]
        if not isinstance(epochs, list) or not epochs or not all(isinstance(e, int) and e >= 0 for e in epochs):
            raise source.error(f"'epochs' must be a non-empty list of epoch numbers >= 0, got {epochs!r}",
                               path + ("epochs",))
        return {"epochs": epochs}
    schedule = {"starting_epoch": entry.get("starting_epoch", 0), "ending_epoch": entry.get("ending_epoch"),
                "frequency": entry.get("frequency", 1)}
    for key, value in schedule.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise source.error(f"'{key}' must be an integer, got {value!r}", path + (key,))
    if schedule["starting_epoch"] < 0:
        raise source.error("starting_epoch must be >= 0", path + ("starting_epoch",))
    if schedule["ending_epoch"] <= schedule["starting_epoch"]:
        raise source.error(f"ending_epoch ({schedule['ending_epoch']}) must be greater than starting_epoch "
                           f"({schedule['starting_epoch']})", path + ("ending_epoch",))
    if schedule["frequency"] < 1:
        raise source.error("frequency must be >= 1", path + ("frequency",))
    return schedule


def _validate(model, optimizer, sched, source):
    if sched is None:
        sched = {}
    if not isinstance(sched, dict):
        raise source.error(f"a schedule must be a mapping of sections, got {type(sched).__name__}")
    allowed = set(registry.SECTIONS) | {"policies", "version"}
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
    for index, (kind, _, args, _) in enumerate(plans):
        _validate_policy_args(kind, args, source, ("policies", index, kind, "args"))
    used = {(POLICY_KINDS[k], n) for k, n, _, _ in plans}
    for section, named in instances.items():
        for name in named:
            if (section, name) not in used:
                msglogger.warning("%s instance '%s' is defined but no policy schedules it", section, name)
    return instances, plans


def _check_single_quantizer(sched, source):
    """Refuses a schedule with several quantizers: each would replace the model's layers for itself, and
    no composition of two quantizers on one model is defined."""
    quantizers = sched.get("quantizers")
    if isinstance(quantizers, dict) and len(quantizers) > 1:
        names = list(quantizers)
        raise source.error(f"the schedule defines {len(names)} quantizers ({', '.join(repr(n) for n in names)}), "
                           "but a model is quantized by one quantizer (stacking quantizers is not defined): keep "
                           "one of them", ("quantizers", names[1]))


def _no_policies_error(instances, source):
    """The error for a schedule without policies, which would run as plain training."""
    defined = [f"{section}.{name}" for section, named in instances.items() for name in named]
    if not defined:
        return source.error("the schedule is empty: it defines no policies, so it would compress nothing; add "
                            "'policies' that schedule pruners/regularizers/quantizers, or do not pass a schedule")
    return source.error(f"the schedule defines {', '.join(defined)} but no policies, so it would compress "
                        "nothing: add a 'policies' list that schedules them by epoch", ("policies",))


_POLICY_ARGS = {"pruner": set(PruningPolicy.ARGS), "regularizer": {"keep_mask"}}


def _validate_policy_args(kind, args, source, path):
    _check_mapping(args, source, path, f"{kind} args")
    valid = _POLICY_ARGS.get(kind, set())
    unknown = sorted(set(args) - valid)
    if unknown:
        hint = suggest(unknown[0], valid)
        raise source.error(f"unknown {kind} argument '{unknown[0]}'" + (f"; did you mean {hint}?" if hint else "")
                           + f" (valid: {', '.join(sorted(valid)) or 'none'})", path + (unknown[0],))
    for name, level in (args.get("levels") or {}).items():
        if not isinstance(level, (int, float)) or not 0 <= level < 1:
            raise source.error(f"sparsity level {level!r} is outside [0, 1)", path + ("levels", name))


# ------------------------------------------------------------------------------------- building
def _make_policy(kind, instance, args):
    if kind == "pruner":
        return PruningPolicy(instance, args)
    if kind == "regularizer":
        return RegularizationPolicy(instance, **args)
    if kind == "quantizer":
        return QuantizationPolicy(instance)
    if kind == "lr_scheduler":
        return LRPolicy(instance)
    return instance  # extensions are policies themselves


def _fast_forward(lr_scheduler, resumed_epoch):
    """Steps a freshly built LR scheduler past the epochs a resumed run already did (exact state, when
    the checkpoint has it, is restored afterwards by the scheduler)."""
    if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(resumed_epoch + 1):
            lr_scheduler.step()


def _configure(model, optimizer, sched, scheduler, resumed_epoch, source):
    instances, plans = _validate(model, optimizer, sched, source)
    if scheduler is None:
        scheduler = CompressionScheduler(model)
    previous_yaml = scheduler.schedule_yaml if scheduler.policies else ""
    for index, (kind, name, args, epochs) in enumerate(plans):
        instance = instances[POLICY_KINDS[kind]][name]
        if kind == "lr_scheduler" and resumed_epoch is not None:
            _fast_forward(instance, resumed_epoch)
        try:
            scheduler.add_policy(_make_policy(kind, instance, args), **epochs)
        except UserError as err:  # e.g. a quantizer that cannot prepare this model
            raise source.error(str(err), ("policies", index)) from None
    scheduler.schedule_yaml = _append_yaml_document(previous_yaml, source.text)
    return scheduler


def _append_yaml_document(stream, text):
    """``stream`` (YAML documents) followed by ``text`` as one more document; None when either is unknown
    (policies added without a schedule, or values YAML cannot write)."""
    if stream is None or text is None:
        return None
    return f"{stream.rstrip()}\n---\n{text}" if stream else text


def describe_schedule(model, filename, optimizer=None):
    """The plan of a schedule file, without changing the model: one row per (policy, parameter).

    Returns:
        a pandas DataFrame with columns ``policy``, ``kind``, ``instance``, ``class``, ``parameter`` and
        ``epochs`` (e.g. ``0..29 every 2``); print it with ``df.to_markdown()``.
    """
    sched, source = load_schedule_file(filename)
    if optimizer is None:  # LR schedulers need one to be built; a throwaway never touches the model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    instances, plans = _validate(model, optimizer, sched, source)
    names = [n for n, _ in model.named_parameters()]
    rows = []
    for index, (kind, name, _, epochs) in enumerate(plans):
        instance = instances[POLICY_KINDS[kind]][name]
        if "epochs" in epochs:
            when = ", ".join(str(e) for e in epochs["epochs"])
        else:
            when = f"{epochs['starting_epoch']}..{epochs['ending_epoch'] - 1} every {epochs['frequency']}"
        targets = ["(all modules)" if kind == "quantizer" else "(optimizer)"]
        if hasattr(instance, "targets") and kind in ("pruner", "regularizer"):
            resolved = match_names(instance.targets(), names)
            targets = list(dict.fromkeys(n for hits in resolved.values() for n in hits))
        for target in targets:
            rows.append({"policy": index, "kind": kind, "instance": name, "class": type(instance).__name__,
                         "parameter": target, "epochs": when})
    return pd.DataFrame(rows, columns=["policy", "kind", "instance", "class", "parameter", "epochs"])
