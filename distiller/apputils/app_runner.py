"""Running a sample application: its command line, its run directory and log, and its exit status.

User errors (the :class:`~distiller.errors.UserError` family) become one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback (exit status 1). The application's setup, which
validates all its input, runs before the run directory exists, so a run refused at setup leaves nothing
behind.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, Optional

from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import ArgumentError, UserError
from .execution_env import RunLogger, config_pylogger

__all__ = ["run_cli", "logging_before_run_dir", "create_run_log", "progress_logging"]


def run_cli(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser,
            argv: Optional[Sequence[str]] = None) -> int:
    """Parses ``argv`` and runs ``main(args)``; returns the process exit status.

    User errors (bad arguments, missing files, bad schedules or checkpoints, missing optional packages)
    print one line on stderr and return 2; the traceback is printed only with ``--verbose``. Every other
    exception is a bug (or an environment failure such as CUDA running out of memory) and propagates with
    its traceback, so the process exits with status 1.
    """
    args = parser.parse_args(argv)
    try:
        main(args)
    except UserError as err:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        sys.stderr.write(f"{parser.prog}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        hint = "; resume with --resume-from <run dir>/checkpoint.pth.tar" if hasattr(args, "resume_from") else ""
        sys.stderr.write(f"{parser.prog}: interrupted{hint}\n")
        return 130
    return 0


class _HeldRecords(logging.Handler):
    """Keeps every log record it receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def logging_before_run_dir(create_run_log: Callable[[], RunLogger], verbose: bool = False) -> Iterator[SimpleNamespace]:
    """Runs the block (the experiment's setup, which validates all input) before anything is written.

    Inside the block, log records go to the console only and are held; after the block succeeds,
    ``create_run_log()`` creates the run directory and its log (e.g. :func:`create_run_log`) and the held
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


def create_run_log(args: argparse.Namespace, log_cfg_file: Optional[str] = None) -> RunLogger:
    """Creates the run directory ``<--out-dir>/<--name>___<timestamp>`` and its log (:func:`config_pylogger`).

    Raises:
        ArgumentError: the run directory cannot be created there (not a directory, no permission, disk full).
    """
    try:
        return config_pylogger(log_cfg_file, args.name, args.output_dir, args.verbose)
    except OSError as err:
        raise ArgumentError(f"--out-dir '{args.output_dir}': cannot create the run directory there "
                            f"({err.strerror or err}); pass a writable directory") from err


@contextlib.contextmanager
def progress_logging() -> Iterator[None]:
    """Within the block, console log lines are printed above tqdm's progress bars (tqdm's
    ``logging_redirect_tqdm``) at the level the replaced console handler had: tqdm's handler has none of its
    own, so without this the console would show every DEBUG record."""
    root = logging.getLogger()
    before = root.handlers[:]
    with logging_redirect_tqdm():
        replaced, added = [h for h in before if h not in root.handlers], [h for h in root.handlers if h not in before]
        for handler in added:
            handler.setLevel(min((h.level for h in replaced), default=logging.NOTSET))
        yield


def report_results(results: dict[str, Any], args: argparse.Namespace, path: Optional[str] = None) -> None:
    """Adds the load average and the arguments to a single-script example's ``results``, prints them as JSON
    and writes them to ``path`` when given."""
    results["load_average"] = os.getloadavg()
    results["args"] = vars(args)
    print(json.dumps(results, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
