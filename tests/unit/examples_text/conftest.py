"""Imports the sequence examples' modules (examples/word_language_model, ncf, GNMT) by file path, under names of
their own, so that their scripts and model files are tested without touching ``sys.path`` order."""
import importlib.util
import os
import sys

import pytest

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples"))


def load_example(directory: str, module: str):
    """The module ``examples/<directory>/<module>.py`` (its directory is put on sys.path for its own imports)."""
    folder = os.path.join(EXAMPLES, directory)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"example_{directory.lower()}_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{module}.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture(scope="session")
def lm_app():
    return load_example("word_language_model", "main")


@pytest.fixture(scope="session")
def ncf_app():
    return load_example("ncf", "ncf")


@pytest.fixture(scope="session")
def gnmt_app():
    return load_example("GNMT", "gnmt")
