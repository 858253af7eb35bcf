"""The documentation site builds with ``mkdocs build --strict``: no broken links, no page missing from the nav."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_site_builds_strictly(tmp_path):
    process = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    pages = {os.path.splitext(name)[0] for name in os.listdir(os.path.join(ROOT, "docs-src")) if name.endswith(".md")}
    built = {name for name in os.listdir(tmp_path / "site")}
    assert pages - {"index"} <= built, "every page of docs-src/ must be built"
