#!/usr/bin/env python3
"""Measures how much of the package's public API carries type annotations; fails below a threshold.

Public: module-level functions and the methods of module-level classes whose names (and whose module's
names) do not start with ``_``; ``__init__`` counts as public when its class is. Counted: each argument
except ``self``/``cls`` (``*args``/``**kwargs`` included), and the return of each function other than
``__init__``. Reads the source with :mod:`ast`, imports nothing.

Usage: ``python tools/typing_coverage.py [--min 90] [--worst 15] [PACKAGE_DIR]``
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def _is_public_module(path: Path, root: Path) -> bool:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return not any(part.startswith("_") and part != "__init__" for part in parts)


def _function_counts(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> tuple[int, int]:
    """(annotated, total) over the arguments and the return of one function."""
    args = node.args
    positional = args.posonlyargs + args.args
    if is_method and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    every = positional + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a is not None]
    annotated = sum(a.annotation is not None for a in every)
    total = len(every)
    if node.name != "__init__":
        total += 1
        annotated += node.returns is not None
    return annotated, total


def _public_functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        not item.name.startswith("_") or item.name == "__init__"):
                    yield item, True


def coverage(package: Path) -> dict[str, tuple[int, int]]:
    """file -> (annotated, total) for every public module of ``package``."""
    result = {}
    for path in sorted(package.rglob("*.py")):
        if not _is_public_module(path, package):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        counts = [_function_counts(node, is_method) for node, is_method in _public_functions(tree)]
        result[str(path)] = (sum(a for a, _ in counts), sum(t for _, t in counts))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(Path(__file__).resolve().parents[1] / "distiller"))
    parser.add_argument("--min", type=float, default=90.0, help="fail below this percentage (default 90)")
    parser.add_argument("--worst", type=int, default=10, help="list this many least-annotated files")
    args = parser.parse_args(argv)
    per_file = coverage(Path(args.package))
    annotated = sum(a for a, _ in per_file.values())
    total = sum(t for _, t in per_file.values())
    percent = 100.0 * annotated / max(total, 1)
    missing = sorted(((t - a, f) for f, (a, t) in per_file.items() if t > a), reverse=True)
    for count, path in missing[:args.worst]:
        print(f"  {count:4d} unannotated  {path}")
    print(f"public API annotated: {annotated} of {total} arguments and returns ({percent:.1f}%; minimum {args.min}%)")
    return 0 if percent >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
