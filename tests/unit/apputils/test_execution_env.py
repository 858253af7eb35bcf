"""Tests of run-directory creation, logging configuration and the environment record."""
import argparse
import json
import logging
import os

from distiller.apputils.execution_env import config_pylogger, create_run_dir, log_execution_env_state


def test_create_run_dir_names_and_keeps_same_second_runs_apart(tmp_path):
    first = create_run_dir(str(tmp_path), "exp")
    second = create_run_dir(str(tmp_path), "exp")
    assert os.path.isdir(first) and os.path.isdir(second) and first != second
    assert os.path.basename(first).startswith("exp___")
    assert os.path.basename(create_run_dir(str(tmp_path / "sub"), None))[:2] == "20"


def test_config_pylogger_writes_log_file_and_replaces_its_handlers(tmp_path):
    root = logging.getLogger()
    try:
        first_log = config_pylogger(None, "one", output_dir=str(tmp_path)).log_filename
        handlers_after_first = len(root.handlers)
        logging.getLogger("distiller.test").info("hello from the first run")
        second = config_pylogger(None, "two", output_dir=str(tmp_path), verbose=True)
        logging.getLogger("distiller.test").debug("debug line of the second run")
        assert len(root.handlers) == handlers_after_first
        with open(first_log) as f:
            first_text = f.read()
        with open(second.log_filename) as f:
            second_text = f.read()
        assert "hello from the first run" in first_text and "second run" not in first_text
        assert "debug line of the second run" in second_text
        assert os.path.dirname(second.log_filename) == second.logdir
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_distiller_run_handler", False)]:
            root.removeHandler(handler)
            handler.close()


def test_log_execution_env_state_records_versions_args_and_copies_configs(tmp_path):
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("version: 1\n")
    logdir = tmp_path / "run"
    logdir.mkdir()
    state = log_execution_env_state([str(schedule)], str(logdir), args=argparse.Namespace(lr=0.1, arch="x"))
    saved = json.loads((logdir / "environment.json").read_text())
    assert saved["torch"] == state["torch"] and saved["args"] == {"arch": "x", "lr": 0.1}
    assert (logdir / "configs" / "schedule.yaml").read_text() == "version: 1\n"


def test_the_run_directory_is_returned_not_stored_on_the_root_logger(tmp_path):
    root = logging.getLogger()
    try:
        run_log = config_pylogger(None, "run", output_dir=str(tmp_path))
        assert os.path.isdir(run_log.logdir) and run_log.logger is root
        assert not hasattr(root, "logdir") and not hasattr(root, "log_filename")
        run_log.info("through the run's logger")
        with open(run_log.log_filename) as f:
            assert "through the run's logger" in f.read()
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_distiller_run_handler", False)]:
            root.removeHandler(handler)
            handler.close()
