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
    return app_runner_for(classifier_app)


@pytest.fixture(scope="session")
def run_lottery():
    """Runs examples/lottery_ticket/lottery.py in-process, as :func:`run_classifier` runs its app."""
    sys.path.insert(0, os.path.join(os.path.dirname(APP_DIR), "lottery_ticket"))
    import lottery
    return app_runner_for(lottery)


def app_runner_for(app_module):
    """A function running ``app_module`` (a script with ``main`` and ``get_args_parser`` over
    ClassifierCompressor) in-process with the given command-line arguments."""
    from distiller.apputils import app_runner, image_classifier

    def run(*argv):
        created = []  # the run directory, when the app got as far as creating one
        create_run_log = image_classifier.create_run_log

        def recording(*args, **kwargs):
            run_log = create_run_log(*args, **kwargs)
            created.append(run_log.logdir)
            return run_log

        stderr = io.StringIO()
        image_classifier.create_run_log = recording
        try:
            with contextlib.redirect_stderr(stderr):
                status = app_runner.run_cli(app_module.main, app_module.get_args_parser(),
                                           [str(a) for a in argv])
        finally:
            image_classifier.create_run_log = create_run_log
        run_dir = created[-1] if created else None
        summary_path = os.path.join(run_dir, "summary.json") if run_dir else ""
        summary = None
        if os.path.isfile(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        return SimpleNamespace(status=status, stderr=stderr.getvalue(), run_dir=run_dir, summary=summary)
    return run


@pytest.fixture(scope="session")
def filter_pruned_checkpoint(tmp_path_factory):
    """A checkpoint of simplenet_cifar with 3 conv1 filters and 8 conv2 filters masked to zero."""
    import torch

    import distiller
    from distiller.apputils import save_checkpoint
    from distiller.models import create_model
    model = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    scheduler = distiller.CompressionScheduler(model)
    for name, zero_filters in (("conv1.weight", 3), ("conv2.weight", 8)):
        mask = torch.ones_like(model.get_parameter(name))
        mask[:zero_filters] = 0
        scheduler.zeros_mask_dict[name].mask = mask
    scheduler.mask_all_weights()
    return save_checkpoint(4, "simplenet_cifar", model, scheduler=scheduler,
                           dir=str(tmp_path_factory.mktemp("filter_pruned")))
