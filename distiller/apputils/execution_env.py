"""Run directories, logging configuration and a record of the execution environment, for applications.

An experiment writes everything (log file, TensorBoard events, CSVs, checkpoints, copies of its
schedules) to its own directory ``<output_dir>/<experiment_name>___<timestamp>/``::

    msglogger = config_pylogger(None, "agp_resnet20", output_dir="logs", verbose=args.verbose)
    log_execution_env_state([args.compress], msglogger.logdir, args=args)
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch

__all__ = ["config_pylogger", "log_execution_env_state", "execution_env_state", "create_run_dir"]

logger = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
_HANDLER_TAG = "_distiller_run_handler"


def create_run_dir(output_dir: Union[str, os.PathLike[str]], experiment_name: Optional[str] = None) -> str:
    """Creates and returns ``<output_dir>/<experiment_name>___<YYYY.MM.DD-HHMMSS>`` (just the timestamp
    when ``experiment_name`` is empty); a ``-2``, ``-3``, ... suffix keeps runs started in the same second
    apart."""
    stamp = time.strftime("%Y.%m.%d-%H%M%S")
    base = os.path.join(output_dir, f"{experiment_name}___{stamp}" if experiment_name else stamp)
    os.makedirs(output_dir, exist_ok=True)
    path, copy = base, 1
    while True:
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            copy += 1
            path = f"{base}-{copy}"


def config_pylogger(log_cfg_file: Optional[str], experiment_name: Optional[str],
                    output_dir: Union[str, os.PathLike[str]] = "logs", verbose: bool = False) -> RunLogger:
    """Creates the run directory and sends log records to a file in it and to the console.

    Args:
        log_cfg_file: optional :func:`logging.config.fileConfig` file; its handlers may use
            ``%(logfilename)s`` for the path of the log file. ``None`` (or a missing file): INFO (DEBUG
            when ``verbose``) to stdout, DEBUG to ``<run dir>/<run dir name>.log``.
        experiment_name: name of the experiment (prefix of the run directory name).
        output_dir: parent of the run directory.
        verbose: log DEBUG records on the console too.
    Returns:
        a :class:`RunLogger` over the root logger, with ``logdir`` (the run directory) and ``log_filename``;
        the run directory is the caller's to pass on (nothing is stored on the root logger). Handlers
        installed by an earlier call are closed and replaced.
    """
    logdir = create_run_dir(output_dir, experiment_name)
    log_filename = os.path.join(logdir, os.path.basename(logdir) + ".log")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    if log_cfg_file and os.path.isfile(log_cfg_file):
        logging.config.fileConfig(log_cfg_file, defaults={"logfilename": log_filename},
                                  disable_existing_loggers=False)
    else:
        if log_cfg_file:
            logger.warning("logging configuration file %s not found: using the default configuration",
                           log_cfg_file)
        console = logging.StreamHandler(sys.stdout)
        console.setLevel(logging.DEBUG if verbose else logging.INFO)
        console.setFormatter(logging.Formatter("%(message)s"))
        logfile = logging.FileHandler(log_filename)
        logfile.setLevel(logging.DEBUG)
        logfile.setFormatter(logging.Formatter(_LOG_FORMAT))
        for handler in (console, logfile):
            setattr(handler, _HANDLER_TAG, True)
            root.addHandler(handler)
        root.setLevel(logging.DEBUG)
    root.info("Log file for this run: %s", os.path.realpath(log_filename))
    return RunLogger(root, logdir, log_filename)


class RunLogger(logging.LoggerAdapter):
    """The root logger of one run, with that run's directory and log file.

    Distiller's applications read the run directory as ``msglogger.logdir``; this keeps that working
    without storing per-run state on the process-wide root logger.
    """

    def __init__(self, logger: logging.Logger, logdir: str, log_filename: str) -> None:
        super().__init__(logger, {})
        self.logdir, self.log_filename = logdir, log_filename


def _git_state(path: str) -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the git checkout containing ``path``, or (None, None) outside one."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def execution_env_state(args: Optional[argparse.Namespace] = None) -> dict[str, Any]:
    """The facts needed to reproduce a run: versions, devices, distiller's git commit, command line."""
    commit, dirty = _git_state(os.path.dirname(os.path.abspath(__file__)))
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "distiller_git_commit": commit,
        "distiller_git_dirty": dirty,
        "command_line": " ".join(sys.argv),
        "args": {key: value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
                 for key, value in sorted(vars(args).items())} if args is not None else None,
    }


def log_execution_env_state(config_paths: Optional[Sequence[Optional[str]]] = None,
                            logdir: Optional[Union[str, os.PathLike[str]]] = None,
                            args: Optional[argparse.Namespace] = None) -> dict[str, Any]:
    """Logs :func:`execution_env_state`; with ``logdir``, also writes it to ``environment.json`` there and
    copies the files in ``config_paths`` (e.g. the schedule YAML) to ``<logdir>/configs/``."""
    state = execution_env_state(args)
    logger.debug("Execution environment:\n%s", json.dumps(state, indent=2))
    logger.info("Command line: %s", state["command_line"])
    if state["distiller_git_commit"]:
        logger.info("distiller git commit %s%s", state["distiller_git_commit"],
                    " (with uncommitted changes)" if state["distiller_git_dirty"] else "")
    if logdir is None:
        return state
    with open(os.path.join(logdir, "environment.json"), "w") as f:
        json.dump(state, f, indent=2)
    configs = [path for path in (config_paths or []) if path]
    if configs:
        os.makedirs(os.path.join(logdir, "configs"), exist_ok=True)
        for path in configs:
            shutil.copy(path, os.path.join(logdir, "configs"))
    return state
