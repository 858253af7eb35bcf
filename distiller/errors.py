"""Exception types raised for user errors (bad schedules, names that match nothing, ...)."""
import difflib


class ScheduleError(ValueError):
    """A compression schedule (YAML file or dict) that cannot be applied.

    The message names the file, the YAML path (e.g. ``pruners.conv_pruner.weights[2]``) and, where
    known, the line, so the user can fix the schedule before any training starts.
    """

    def __init__(self, message, *, filename=None, path=None, line=None):
        self.filename, self.path, self.line, self.reason = filename, path, line, message
        where = ", ".join(part for part in (
            str(filename) if filename else None,
            f"at '{path}'" if path else None,
            f"line {line}" if line else None) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnmatchedNameError(ValueError):
    """A parameter/module name or regular expression that matches nothing in the model."""

    def __init__(self, pattern, candidates, kind="parameter"):
        self.pattern = pattern
        candidates = list(candidates)
        hint = suggest(pattern, candidates)
        super().__init__(f"'{pattern}' matches no {kind} of the model ({len(candidates)} {kind}s exist)"
                         + (f"; did you mean {hint}?" if hint else ""))


def suggest(name, candidates, n=3):
    """Returns the closest matches of ``name`` among ``candidates`` as a quoted, comma-separated string."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)
    return ", ".join(f"'{m}'" for m in matches)
