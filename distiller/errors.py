"""The user-error family: exceptions that mean *bad input*, never a bug in the library.

Every error raised where user input is checked (a schedule, a command-line value, a file, a checkpoint)
is a :class:`UserError`. Applications map exactly this family to a one-line message and exit status 2;
anything else is a library bug and keeps its traceback (exit status 1). Each class also derives from
the built-in type that Python code would expect (``ValueError``, ``FileNotFoundError``), so existing
``except ValueError`` handlers keep working.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike
from typing import Any, Optional, Union

__all__ = ["UserError", "ScheduleError", "ArgumentError", "InputFileError", "CheckpointError",
           "UnmatchedNameError", "MissingDependencyError", "suggest", "summarize_names", "first_few"]


class UserError(Exception):
    """Base of the user-error family: the input is wrong and the message says how to fix it."""


class ScheduleError(UserError, ValueError):
    """A compression schedule (YAML file or dict) that cannot be applied.

    The message names the file, the YAML path (e.g. ``pruners.conv_pruner.weights[2]``) and, where
    known, the line, so the user can fix the schedule before any training starts.
    """

    def __init__(self, message: str, *, filename: Optional[Union[str, PathLike]] = None,
                 path: Optional[str] = None, line: Optional[int] = None) -> None:
        self.filename, self.path, self.line, self.reason = filename, path, line, message
        where = ", ".join(part for part in (
            str(filename) if filename else None,
            f"at '{path}'" if path else None,
            f"line {line}" if line else None) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ArgumentError(UserError, ValueError):
    """A bad argument value given to a library function, a schedulable class or a command-line flag.

    Attributes:
        argument: the argument's name, when known (:mod:`distiller.config` turns it into a YAML path).
        location: where inside the argument's value the problem is, e.g. ``('thresholds', 'fc.weight')``.
    """

    def __init__(self, message: str, *, argument: Optional[str] = None, location: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.argument, self.location = argument, tuple(location)


class InputFileError(UserError, FileNotFoundError):
    """A file or directory named by the user does not exist or cannot be read as what it should be."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that does not fit the model, the architecture or the run it is loaded into."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that the requested feature needs is not installed; the message says which
    ``pip install`` brings it."""


class UnmatchedNameError(UserError, ValueError):
    """A parameter/module name or regular expression that matches nothing in the model."""

    def __init__(self, pattern: str, candidates: Iterable[Any], kind: str = "parameter") -> None:
        self.pattern = pattern
        candidates = list(candidates)
        hint = suggest(pattern, candidates)
        super().__init__(f"'{pattern}' matches no {kind} of the model ({len(candidates)} {kind}s exist)"
                         + (f"; did you mean {hint}?" if hint else ""))


def suggest(name: Any, candidates: Iterable[Any], n: int = 3) -> str:
    """Returns the closest matches of ``name`` among ``candidates`` as a quoted, comma-separated string."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)
    return ", ".join(f"'{m}'" for m in matches)


def summarize_names(names: Iterable[str], first: int = 5) -> str:
    """``'a', 'b', 'c' and 7 more``: the first few of ``names``, quoted, and how many were left out."""
    return first_few([f"'{name}'" for name in names], first)


def first_few(items: Iterable[str], first: int = 5, separator: str = ", ") -> str:
    """The first few of ``items`` joined by ``separator``, then ``and N more`` for those left out."""
    items = list(items)
    return separator.join(items[:first]) + (f" and {len(items) - first} more" if len(items) > first else "")
