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


def test_schedule_reference_page_is_generated_from_the_registries():
    """Every registered class appears with its arguments; a new class or argument without regenerating the
    page (python tools/schedule_reference.py) fails here."""
    process = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "schedule_reference.py"), "--check"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    from distiller.registry import SECTIONS
    page = open(os.path.join(ROOT, "docs-src", "schedule-reference.md")).read()
    for section in SECTIONS.values():
        for name in section.registry.names():
            assert f"### `{name}`" in page
