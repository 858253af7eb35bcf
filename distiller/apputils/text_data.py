"""Word-level text corpora for the sequence sample applications: a vocabulary, WikiText-2 style corpora,
parallel (translation) corpora, and language-model batching.

A WikiText-2 style corpus is a directory with ``train.txt``, ``valid.txt`` and ``test.txt``, one
whitespace-tokenised paragraph per line; every line ends with an end-of-sentence token, as in the PyTorch
word-language-model example (Merity et al., "Pointer Sentinel Mixture Models", 2016, for WikiText-2). A
parallel corpus holds ``{split}.{src_ext}`` and ``{split}.{tgt_ext}`` with one sentence pair per line.
"""
from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ArgumentError, CheckpointError, InputFileError

__all__ = ["UNK", "EOS", "PAD", "BOS", "SPLITS", "Vocabulary", "WordCorpus", "ParallelCorpus", "read_word_corpus",
           "word_corpus_from_splits", "read_parallel_corpus", "read_text_lines", "batchify", "bptt_batches"]

UNK, EOS, PAD, BOS = "<unk>", "<eos>", "<pad>", "<bos>"
#: The splits of a corpus directory, in order.
SPLITS = ("train", "valid", "test")


class Vocabulary:
    """Words and their indices; unknown words map to :data:`UNK` when the vocabulary has it.

    Args:
        words: the words in index order (no duplicates).
    Raises:
        ArgumentError: a word appears twice.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            twice = next(w for w, n in collections.Counter(self.words).items() if n > 1)
            raise ArgumentError(f"vocabulary lists '{twice}' more than once", argument="words")

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], max_size: Optional[int] = None,
                    specials: Sequence[str] = (UNK, EOS)) -> Vocabulary:
        """The ``specials`` then the most frequent tokens (ties by word), at most ``max_size`` words in all."""
        counts = collections.Counter(token for token in tokens if token not in specials)
        ranked = sorted(counts, key=lambda word: (-counts[word], word))
        keep = None if max_size is None else max(0, max_size - len(specials))
        return cls([*specials, *ranked[:keep]])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, tokens: Iterable[str]) -> torch.Tensor:
        """The indices of ``tokens`` (a 1-D ``int64`` tensor); words not in the vocabulary become :data:`UNK`.

        Raises:
            ArgumentError: a word is unknown and the vocabulary has no :data:`UNK`.
        """
        unk = self.index.get(UNK)
        ids = []
        for token in tokens:
            index = self.index.get(token, unk)
            if index is None:
                raise ArgumentError(f"'{token}' is not in the vocabulary, which has no '{UNK}' to stand for it")
            ids.append(index)
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of indices ``ids``."""
        return [self.words[int(i)] for i in ids]

    def check_same(self, saved: Sequence[str], checkpoint: str, which: str = "") -> None:
        """Refuses a model trained with another vocabulary (``saved``, the words in a checkpoint; ``which``
        vocabulary, e.g. 'source', for messages).

        Raises:
            CheckpointError: naming the checkpoint, both sizes and the first word that differs.
        """
        if list(saved) == self.words:
            return
        first = next((i for i, (a, b) in enumerate(zip(saved, self.words)) if a != b), min(len(saved), len(self)))
        mine = self.words[first] if first < len(self) else "(end)"
        theirs = saved[first] if first < len(saved) else "(end)"
        kind = f"{which} vocabulary" if which else "vocabulary"
        raise CheckpointError(f"checkpoint '{checkpoint}' was trained with a {kind} of {len(saved)} words, this "
                              f"data has {len(self)} (first difference at index {first}: '{theirs}' in the "
                              f"checkpoint, '{mine}' here); use the corpus and vocabulary options it was trained with")


@dataclass
class WordCorpus:
    """A vocabulary and the token indices of each split (1-D ``int64`` tensors)."""

    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


@dataclass
class ParallelCorpus:
    """Sentence pairs (token lists) of each split: ``splits['train'] = (sources, targets)``."""

    splits: dict[str, tuple[list[list[str]], list[list[str]]]]


def read_text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file, without line ends.

    Raises:
        InputFileError: the file does not exist or is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise InputFileError(f"no such file '{path}'") from None
    except UnicodeDecodeError as err:
        raise InputFileError(f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _corpus_dir(directory: str, files: Sequence[str], layout: str) -> None:
    if not os.path.isdir(directory):
        raise InputFileError(f"corpus directory '{directory}' does not exist")
    missing = [name for name in files if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise InputFileError(f"corpus directory '{directory}' has no {', '.join(missing)}: it needs {layout}")


def word_corpus_from_splits(splits: dict[str, list[list[str]]], max_vocab: Optional[int] = None) -> WordCorpus:
    """Builds the vocabulary from the training split's tokens (:data:`UNK` and :data:`EOS` first) and encodes
    each split, lines joined, each ending with :data:`EOS`.

    Args:
        splits: the token lists (one per line) of ``train``, ``valid`` and ``test``.
        max_vocab: keep this many words at most (the rest become :data:`UNK`).
    """
    vocab = Vocabulary.from_tokens((token for line in splits["train"] for token in line), max_vocab)
    encoded = {split: vocab.encode(token for line in lines for token in (*line, EOS))
               for split, lines in splits.items()}
    return WordCorpus(vocab, encoded["train"], encoded["valid"], encoded["test"])


def read_word_corpus(directory: str, max_vocab: Optional[int] = None) -> WordCorpus:
    """Reads a WikiText-2 style corpus directory (``train.txt``, ``valid.txt``, ``test.txt``).

    Raises:
        InputFileError: the directory or one of the files is missing, or a file is not UTF-8 text.
    """
    files = [f"{split}.txt" for split in SPLITS]
    _corpus_dir(directory, files, "WikiText-2 style train.txt, valid.txt and test.txt (one tokenised paragraph a line)")
    splits = {split: [line.split() for line in read_text_lines(os.path.join(directory, name)) if line.strip()]
              for split, name in zip(SPLITS, files)}
    empty = [split for split, lines in splits.items() if not lines]
    if empty:
        raise InputFileError(f"corpus directory '{directory}': {empty[0]}.txt holds no text")
    return word_corpus_from_splits(splits, max_vocab)


def read_parallel_corpus(directory: str, src_ext: str, tgt_ext: str) -> ParallelCorpus:
    """Reads ``{train,valid,test}.{src_ext}`` / ``.{tgt_ext}``: one whitespace-tokenised sentence a line, line
    ``i`` of the target file translating line ``i`` of the source file.

    Raises:
        InputFileError: a missing file, or two files of a split with different numbers of lines.
    """
    files = [f"{split}.{ext}" for split in SPLITS for ext in (src_ext, tgt_ext)]
    _corpus_dir(directory, files, f"parallel files {{train,valid,test}}.{src_ext} and .{tgt_ext}, one sentence a line")
    splits = {}
    for split in SPLITS:
        src, tgt = (read_text_lines(os.path.join(directory, f"{split}.{ext}")) for ext in (src_ext, tgt_ext))
        if len(src) != len(tgt):
            raise InputFileError(f"'{os.path.join(directory, split)}.{src_ext}' has {len(src)} lines but "
                                 f"'.{tgt_ext}' has {len(tgt)}: each line must translate the same line of the other")
        pairs = [(s.split(), t.split()) for s, t in zip(src, tgt) if s.strip() and t.strip()]
        if not pairs:
            raise InputFileError(f"'{os.path.join(directory, split)}.{src_ext}' / '.{tgt_ext}' hold no sentence pair")
        splits[split] = ([s for s, _ in pairs], [t for _, t in pairs])
    return ParallelCorpus(splits)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cuts a token stream into ``batch_size`` contiguous columns: ``[len(ids) // batch_size, batch_size]``
    (the remainder is dropped), as language models are trained with truncated back-propagation.

    Raises:
        ArgumentError: fewer tokens than ``batch_size``.
    """
    rows = ids.numel() // batch_size
    if rows < 2:
        raise ArgumentError(f"{ids.numel()} tokens cannot fill 2 rows of batch size {batch_size}: use a smaller "
                            f"batch size or a larger corpus", argument="batch_size")
    return ids[:rows * batch_size].view(batch_size, rows).t().contiguous()


def bptt_batches(data: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(inputs, targets)`` windows of at most ``bptt`` steps over ``batchify``'s output; the targets are the
    inputs shifted by one step."""
    for start in range(0, data.size(0) - 1, bptt):
        length = min(bptt, data.size(0) - 1 - start)
        yield data[start:start + length], data[start + 1:start + 1 + length]
