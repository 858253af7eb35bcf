"""An English corpus that ships with Python: the docstrings of the standard library, as a WikiText-like
word corpus (the default data of the word-language-model example, where no corpus can be downloaded).

The standard library's ``.py`` files are parsed with :mod:`ast` (nothing is imported), in sorted path order;
every module, class and function docstring becomes one paragraph. Doctest and code lines are dropped, text is
lower-cased and split into words, numbers (``N``, as in the Penn Treebank language-model data) and
punctuation. Paragraph ``i`` goes to ``valid`` when ``i % 20 == 18``, to ``test`` when ``i % 20 == 19`` and to
``train`` otherwise, so the split is deterministic for a given Python installation.
"""
from __future__ import annotations

import ast
import os
import re
import sysconfig
import warnings
from collections.abc import Iterator
from typing import Optional

from ..errors import ArgumentError
from .text_data import SPLITS, WordCorpus, word_corpus_from_splits

__all__ = ["tokenize_words", "stdlib_docstrings", "stdlib_docstring_corpus"]

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+(?:\.[0-9]+)*|[.,;:!?()]")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |[{}\[\]#@])")
_SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}
#: Every 20th paragraph (index 18 mod 20) is validation, the next test.
_PERIOD, _VALID_AT, _TEST_AT = 20, 18, 19


def tokenize_words(text: str) -> list[str]:
    """Lower-cased words (with inner apostrophes), ``N`` for each number, and ``.,;:!?()`` as tokens."""
    return ["N" if token[0].isdigit() else token for token in _TOKEN.findall(text.lower())]


def _python_files(root: str) -> Iterator[str]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS)
        yield from (os.path.join(directory, name) for name in sorted(files) if name.endswith(".py"))


def _docstrings(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield doc


def stdlib_docstrings(root: Optional[str] = None) -> Iterator[list[str]]:
    """The tokens of each docstring (of at least 5 words) of the standard library at ``root`` (default: this
    interpreter's), code and doctest lines removed."""
    for path in _python_files(root or sysconfig.get_paths()["stdlib"]):
        for doc in _docstrings(path):
            prose = "\n".join(line for line in doc.splitlines() if not _CODE_LINE.match(line))
            tokens = tokenize_words(prose)
            if len(tokens) >= 5:
                yield tokens


def stdlib_docstring_corpus(max_words: int, max_vocab: Optional[int] = None,
                            root: Optional[str] = None) -> WordCorpus:
    """The standard library's docstrings as a word corpus of about ``max_words`` tokens (all splits together).

    Args:
        max_words: stop after the paragraph that reaches this many tokens.
        max_vocab: keep this many words at most (the rest become ``<unk>``).
        root: the standard-library directory (default: this interpreter's).
    Raises:
        ArgumentError: ``max_words`` too small to give every split a paragraph.
    """
    splits: dict[str, list[list[str]]] = {split: [] for split in SPLITS}
    total = 0
    for index, tokens in enumerate(stdlib_docstrings(root)):
        at = index % _PERIOD
        splits["valid" if at == _VALID_AT else "test" if at == _TEST_AT else "train"].append(tokens)
        total += len(tokens) + 1
        if total >= max_words and index % _PERIOD == _TEST_AT:
            break
    if not splits["test"]:
        raise ArgumentError(f"max_words={max_words} leaves no test paragraph: ask for more words", argument="max_words")
    return word_corpus_from_splits(splits, max_vocab)
