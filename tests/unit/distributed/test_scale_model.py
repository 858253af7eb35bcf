"""docs-src/scale.md quotes tools/scale_model.py's table: the test fails when the model or the page changed alone."""
import contextlib
import importlib.util
import io
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _scale_model():
    spec = importlib.util.spec_from_file_location("scale_model", os.path.join(ROOT, "tools", "scale_model.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_model"] = module
    spec.loader.exec_module(module)
    return module


def test_scale_page_quotes_the_model_output():
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        table = _scale_model().main([])
    with open(os.path.join(ROOT, "docs-src", "scale.md"), encoding="utf-8") as f:
        page = f.read()
    assert table in page, "docs-src/scale.md: paste the table `python tools/scale_model.py` prints"
    summary = printed.getvalue().splitlines()[0]  # "ResNet-50: 25,557,032 parameters, ..."
    assert summary.split(": ", 1)[1] in page.replace("\n", " ")


def test_collective_costs_follow_the_alpha_beta_model():
    model = _scale_model()
    net = model.Network(bandwidth=1e9, latency=1e-5)
    sent, seconds = net.all_reduce(1e6, 8)
    assert sent == 2 * 7 / 8 * 1e6 and abs(seconds - (sent / 1e9 + 2 * 3e-5)) < 1e-12
    assert net.broadcast(1e6, 64) == (1e6, 1e6 / 1e9 + 6e-5)
