"""`import distiller` has no side effects."""
import subprocess
import sys

CHECK = """
import logging, torch
handlers_before = list(logging.getLogger().handlers)
import distiller
assert not torch.cuda.is_initialized(), "import initialised CUDA"
assert logging.getLogger().handlers == handlers_before, "import configured logging"
assert distiller.__version__
"""


def test_import_has_no_side_effects():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "import printed to stdout"
    assert "Warning" not in result.stderr, result.stderr


def test_version_comes_from_one_place():
    import distiller
    from distiller._version import __version__
    assert distiller.__version__ is __version__
