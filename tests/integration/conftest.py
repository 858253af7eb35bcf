"""Fixtures that run the classifier compression sample application in-process."""
import contextlib
import io
import json
import os
import sys
from types import SimpleNamespace

import pytest

APP_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "classifier_compression"))


@pytest.fixture(scope="session")
def classifier_app():
    """The ``compress_classifier`` module (imported from examples/classifier_compression)."""
    sys.path.insert(0, APP_DIR)
    import compress_classifier
    return compress_classifier


@pytest.fixture(scope="session")
def run_classifier(classifier_app):
    """Runs the app in-process with the given command-line arguments.

    Returns:
        a namespace with ``status`` (exit status), ``stderr``, ``run_dir`` and ``summary`` (the parsed
        summary.json, or None).
    """
    import app_utils

    def run(*argv):
        created = []  # the run directory, when the app got as far as creating one
        create_run_log = app_utils.create_run_log

        def recording(args):
            run_log = create_run_log(args)
            created.append(run_log.logdir)
            return run_log

        stderr = io.StringIO()
        app_utils.create_run_log = recording
        try:
            with contextlib.redirect_stderr(stderr):
                status = app_utils.run_cli(classifier_app.main, classifier_app.get_args_parser(),
                                           [str(a) for a in argv])
        finally:
            app_utils.create_run_log = create_run_log
        run_dir = created[-1] if created else None
        summary_path = os.path.join(run_dir, "summary.json") if run_dir else ""
        summary = None
        if os.path.isfile(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        return SimpleNamespace(status=status, stderr=stderr.getvalue(), run_dir=run_dir, summary=summary)
    return run
