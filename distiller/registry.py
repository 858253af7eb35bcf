"""Explicit registries: names -> classes (or functions), and the schedule sections built on them.

Each schedule section (``pruners``, ``regularizers``, ...) is a :class:`Section`: its YAML key, the
key of its policy entries, the :class:`Registry` of its classes and how a policy is built from an
instance. Library classes register themselves with a decorator; users register their own classes, and
whole new sections, the same way before loading a schedule::

    from distiller.registry import register_pruner

    @register_pruner
    class MyPruner(distiller.pruning.ParameterPruner):
        '''Prunes my way.

        YAML::

            my_pruner:
              class: MyPruner
              weights: [conv1.weight]
        '''

A class's ``YAML::`` docstring block (or the ``example=`` given at registration) is its runnable
example: the registry-wide test builds every registered class from it.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

import yaml

from .errors import ArgumentError, suggest

__all__ = ["Registry", "Section", "SECTIONS", "register_section", "list_classes", "yaml_example", "refuse_untrainable",
           "PRUNERS", "REGULARIZERS", "QUANTIZERS", "DISTILLERS", "LR_SCHEDULERS", "EXTENSIONS", "MODEL_TRANSFORMS",
           "register_pruner", "register_regularizer", "register_quantizer", "register_distiller",
           "register_lr_scheduler", "register_extension", "register_model_transform"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with what the registry knows about it."""
    name: str
    value: T
    example: Optional[dict[str, Any]] = None
    trains: bool = True


class Registry(Generic[T]):
    """A name -> object mapping (classes for schedule sections, builders for models, replay functions for
    model transforms), filled by :meth:`register`, read by :meth:`get`.

    Args:
        kind: what the registry holds, for messages (``'pruners'``, ``'model transforms'``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    @property
    def section(self) -> str:
        """The registry's kind (Distiller-era name of the attribute)."""
        return self.kind

    def register(self, obj: Optional[T] = None, *, name: Optional[str] = None,
                 example: Optional[str | Mapping[str, Any]] = None, trains: bool = True) -> Any:
        """Registers ``obj`` under ``name`` (default: its ``__name__``). Usable as a decorator, with or
        without arguments.

        Args:
            example: the YAML arguments (a mapping, or YAML text) of a runnable example; by default the
                ``YAML::`` block of the object's docstring.
            trains: False for classes that only apply to trained models (post-training quantizers): a
                training schedule refuses them.
        Raises:
            ArgumentError: ``name`` is already registered by another object.
        """
        def add(item: T) -> T:
            key = name or getattr(item, "__name__", None)
            if key is None:
                raise ArgumentError(f"{self.kind}: {item!r} has no __name__: register it with name=...")
            existing = self._entries.get(key)
            if existing is not None and existing.value is not item:
                where = getattr(existing.value, "__module__", "?") + "." + getattr(existing.value, "__qualname__", key)
                raise ArgumentError(f"{self.kind}: the name '{key}' is already registered by {where}")
            parsed = yaml.safe_load(example) if isinstance(example, str) else example
            self._entries[key] = Entry(key, item, dict(parsed) if parsed is not None else None, trains)
            return item
        return add(obj) if obj is not None else add

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (e.g. to register into temporarily in a test)."""
        twin: Registry[T] = Registry(self.kind)
        twin._entries = dict(self._entries)
        return twin

    def unregister(self, name: str) -> None:
        """Removes ``name`` (e.g. a class a test or notebook registered for itself)."""
        self.entry(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """Returns the object registered as ``name``; raises KeyError with close matches otherwise."""
        return self.entry(name).value

    def entry(self, name: str) -> Entry[T]:
        """The :class:`Entry` of ``name``; raises KeyError with close matches otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            hint = suggest(name, self._entries)
            raise KeyError(f"unknown {self.kind} class '{name}'"
                           + (f"; did you mean {hint}?" if hint else "")
                           + f" ({len(self._entries)} registered: see distiller.registry.list_classes"
                             f"('{self.kind}'))") from None

    def entry_of(self, obj: Any) -> Optional[Entry[T]]:
        """The entry whose object is ``obj`` or, for an instance, ``type(obj)``; None if not registered."""
        for entry in self._entries.values():
            if entry.value is obj or entry.value is type(obj):
                return entry
        return None

    def example(self, name: str) -> Optional[dict[str, Any]]:
        """The YAML arguments of ``name``'s runnable example (registration argument, else docstring)."""
        entry = self.entry(name)
        return entry.example if entry.example is not None else yaml_example(entry.value)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name].value) for name in sorted(self._entries)]


_YAML_BLOCK = re.compile(r"^(?P<indent>[ \t]*)YAML::[ \t]*\n(?P<body>(?:(?:(?P=indent)[ \t]+.*)?\n)+)", re.MULTILINE)


def yaml_example(obj: Any) -> Optional[dict[str, Any]]:
    """The arguments of the first ``YAML::`` block in ``obj``'s docstring: the block holds one instance
    (``name: {class: X, ...}``); returned without ``class``. None when the docstring has no block."""
    match = _YAML_BLOCK.search((inspect.getdoc(obj) or "") + "\n")
    if match is None:
        return None
    parsed = yaml.safe_load(textwrap.dedent(match.group("body")))
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise ArgumentError(f"{getattr(obj, '__qualname__', obj)}: the docstring's YAML:: block must hold exactly "
                            "one instance ('name: {class: ..., ...}')")
    (body,) = parsed.values()
    return {key: value for key, value in (body or {}).items() if key != "class"}


def refuse_untrainable(registry: Registry[Any], instance: Any) -> None:
    """Raises ArgumentError if ``instance``'s class is registered with ``trains=False``.

    Used by the training policies and by the schedule loader, so both refuse the same way.
    """
    entry = registry.entry_of(instance)
    if entry is not None and not entry.trains:
        raise ArgumentError(f"{entry.name} applies to trained models for inference and cannot be trained: use it "
                            "after training (e.g. --quantize-eval / --qe-config-file), or schedule a "
                            "training-time class (e.g. QuantAwareTrainRangeLinearQuantizer)")


PolicyBuilder = Callable[[Any, Any], Any]  # (instance, typed policy args or None) -> policy


@dataclass(frozen=True)
class Section:
    """A schedule section, as data.

    Attributes:
        key: the YAML key of the section (``'pruners'``).
        policy_key: the key of a policy entry that schedules an instance of it (``'pruner'``).
        registry: the classes that instances of the section may name.
        make_policy: ``(instance, policy_args) -> policy``: the policy that runs an instance.
        policy_args: the names and defaults of the arguments a policy entry may give (``args:``), as a
            record class whose constructor validates them; None when the policy takes none.
        injected: constructor arguments distiller supplies, never the schedule.
    """
    key: str
    policy_key: str
    registry: Registry[Any]
    make_policy: PolicyBuilder
    policy_args: Optional[type] = None
    injected: tuple[str, ...] = ("name", "model", "optimizer")


#: The schedule sections, in the order their instances are built.
SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> Section:
    """Adds a schedule section (e.g. ``distillers`` with policy key ``distiller``): schedules may then
    define its instances and schedule them with policies, without any change to the library.

    Raises:
        ArgumentError: the YAML key or the policy key is taken by another section.
    """
    for other in SECTIONS.values():
        if other.key != section.key and section.policy_key == other.policy_key:
            raise ArgumentError(f"the policy key '{section.policy_key}' is already used by section '{other.key}'")
    if section.key in SECTIONS and SECTIONS[section.key] != section:
        raise ArgumentError(f"the schedule section '{section.key}' is already registered")
    SECTIONS[section.key] = section
    return section


PRUNERS: Registry[type] = Registry("pruners")
REGULARIZERS: Registry[type] = Registry("regularizers")
QUANTIZERS: Registry[type] = Registry("quantizers")
DISTILLERS: Registry[type] = Registry("distillers")
LR_SCHEDULERS: Registry[type] = Registry("lr_schedulers")
EXTENSIONS: Registry[type] = Registry("extensions")
#: kind -> ``fn(model, record, optimizer=None)`` that replays a structural change (thinning, quantization)
#: recorded by ``CompressionScheduler.record_transform`` on a freshly built model.
MODEL_TRANSFORMS: Registry[Callable[..., Any]] = Registry("model transforms")

register_pruner = PRUNERS.register
register_regularizer = REGULARIZERS.register
register_quantizer = QUANTIZERS.register
register_distiller = DISTILLERS.register
register_lr_scheduler = LR_SCHEDULERS.register
register_extension = EXTENSIONS.register


def register_model_transform(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Registers the replay function for model-transform records of ``kind``. Usable as a decorator."""
    return MODEL_TRANSFORMS.register(name=kind)


def list_classes(section: Optional[str] = None) -> Any:
    """Lists registered class names, for one section or as a {section: names} dict for all."""
    if section is not None:
        return SECTIONS[section].registry.names()
    return {key: sec.registry.names() for key, sec in SECTIONS.items()}
