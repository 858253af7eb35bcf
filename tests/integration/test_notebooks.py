"""The notebooks of jupyter/ run from top to bottom on a fresh ``python3`` kernel, and are stored without outputs."""
import os

import nbformat
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NOTEBOOK_DIR = os.path.join(ROOT, "jupyter")
NOTEBOOKS = sorted(name for name in os.listdir(NOTEBOOK_DIR) if name.endswith(".ipynb"))
#: seconds one cell may take (each notebook runs in well under a minute on two CPU cores)
CELL_TIMEOUT = 180


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


def test_the_documented_notebooks_exist():
    assert {"sensitivity_analysis.ipynb", "model_summary.ipynb", "compression_insights.ipynb",
            "truncated_svd.ipynb", "compress_your_own_model.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    with_outputs = [index for index, cell in enumerate(notebook.cells)
                    if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert with_outputs == [], f"{name}: cells {with_outputs} keep outputs; clear them before committing"
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_draws_its_charts(name, tmp_path):
    from nbclient import NotebookClient

    notebook = read(name)
    # the kernel runs in an empty directory: a notebook must not need, or leave, files beside it
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} draws no chart"
    assert os.listdir(tmp_path) == [], f"{name} left files in its directory: {os.listdir(tmp_path)}"
