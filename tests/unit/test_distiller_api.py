"""Distiller's public surface: every name its users import is importable from the same module and accepts
Distiller's positional parameters, in Distiller's order, under Distiller's names.

The facts come from Distiller's source (``tests/data/distiller_api_names.tsv`` and
``distiller_api_modules.tsv``, copies of ``distiller-api/``). Names whose capability is still an open
piece of work are listed in ``PENDING`` with the reason, and the test asserts that they indeed do not
import yet, so the list shrinks as the work lands and cannot hide a regression. Names of Distiller
machinery that no longer exists are in ``MIGRATION``: importable, they raise a ``UserError`` naming the
replacement (the migration table of docs-src/coming-from-distiller.md lists the same names).
"""
import ast
import csv
import importlib
import inspect
from pathlib import Path

import pytest
import torch

from distiller.errors import UserError

DATA = Path(__file__).parents[1] / "data"

#: "module.name" -> why it is not available yet. Each must fail to import.
PENDING: dict[str, str] = {}
#: module paths that do not exist yet -> why.
PENDING_MODULES: dict[str, str] = {}
#: "module.name" -> arguments of a call that must raise a UserError naming the replacement.
MIGRATION = {
    "distiller.resnet_cifar_remove_layers": lambda: (torch.nn.Linear(2, 2),),
}


def _rows():
    with open(DATA / "distiller_api_names.tsv") as f:
        rows = [row for row in csv.reader(f, delimiter="\t") if row and not row[0].startswith("#")]
    return [dict(module=r[0], name=r[1], kind=r[2], defined_in=r[3], signature=r[4], uses=int(r[5])) for r in rows]


def _modules():
    with open(DATA / "distiller_api_modules.tsv") as f:
        return [row[0] for row in csv.reader(f, delimiter="\t") if row and not row[0].startswith("#")]


ROWS = _rows()
MODULES = _modules()


def _key(row):
    return f"{row['module']}.{row['name']}"


def _distiller_parameters(signature):
    """[(name, has_default)] of the positional parameters of a signature string like ``(a, b=1, *args)``."""
    arguments = ast.parse(f"def f{signature}: pass").body[0].args
    names = [a.arg for a in arguments.posonlyargs + arguments.args]
    first_default = len(names) - len(arguments.defaults)
    return [(name, i >= first_default) for i, name in enumerate(names)]


def _lookup(row):
    return getattr(importlib.import_module(row["module"]), row["name"])


def test_the_facts_and_the_lists_agree():
    assert len(ROWS) == 204 and len(MODULES) == 21
    keys = {_key(row) for row in ROWS}
    assert set(PENDING) <= keys, set(PENDING) - keys
    assert set(MIGRATION) <= keys, set(MIGRATION) - keys
    assert set(PENDING_MODULES) <= set(MODULES) | {row["module"] for row in ROWS}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    if module in PENDING_MODULES:
        with pytest.raises(ImportError):
            importlib.import_module(module)
    else:
        importlib.import_module(module)


@pytest.mark.parametrize("row", ROWS, ids=_key)
def test_name_is_importable_with_distillers_parameters(row):
    if _key(row) in PENDING:
        with pytest.raises((ImportError, AttributeError)):
            _lookup(row)
        return
    obj = _lookup(row)
    if not row["signature"]:
        return
    expected = _distiller_parameters(row["signature"])
    parameters = list(inspect.signature(obj).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [p.name for p in positional[:len(expected)]] == [name for name, _ in expected], \
        f"{_key(row)}{inspect.signature(obj)} does not start with Distiller's {row['signature']}"
    for p, (name, has_default) in zip(positional, expected):
        if has_default:
            assert p.default is not p.empty, f"{_key(row)}: '{name}' has a default in Distiller, not here"
    for p in positional[len(expected):]:
        assert p.default is not p.empty, f"{_key(row)}: new parameter '{p.name}' must be optional"


@pytest.mark.parametrize("key", sorted(MIGRATION))
def test_removed_machinery_raises_a_user_error_naming_the_replacement(key):
    module, _, name = key.rpartition(".")
    with pytest.raises(UserError, match="instead"):
        getattr(importlib.import_module(module), name)(*MIGRATION[key]())


def test_readme_states_the_counts_and_the_docs_list_every_missing_or_changed_name():
    root = Path(__file__).parents[2]
    readme = " ".join((root / "README.md").read_text().split())
    page = (root / "docs-src" / "coming-from-distiller.md").read_text()
    available = len([row for row in ROWS if _key(row) not in PENDING])
    modules = len([module for module in MODULES if module not in PENDING_MODULES])
    assert f"{available} of the {len(ROWS)} public names" in readme
    assert f"{modules} of its {len(MODULES)} module paths" in readme
    for key in list(PENDING) + list(PENDING_MODULES) + list(MIGRATION):
        assert key.rpartition(".")[2] in page, f"the 'Coming from Distiller' page does not mention {key}"
