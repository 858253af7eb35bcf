"""Sentence pairs for the translation example: a user's parallel corpus, or a generated "translation" task, and
padded batches of them.

The generated task is reversible and needs attention: a source sentence of 3 to 10 words over ``s0..s{n-1}``
is translated into the reversed sentence with each word mapped to its own target word (a fixed random
permutation onto ``t0..t{n-1}``).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from distiller.apputils.text_data import BOS, EOS, PAD, UNK, SPLITS, ParallelCorpus, Vocabulary

#: Special tokens of both vocabularies; PAD is index 0.
SPECIALS = (PAD, UNK, BOS, EOS)


def generated_translation_task(seed: int, train_pairs: int = 6000, words: int = 40, min_len: int = 3,
                               max_len: int = 10) -> ParallelCorpus:
    """The reverse-and-map task (seeded): target = reversed source, word ``s{i}`` becoming ``t{perm[i]}``;
    ``train_pairs`` training pairs, a twentieth of that (at least 2) each for validation and test."""
    sizes = {"train": train_pairs, "valid": max(2, train_pairs // 20), "test": max(2, train_pairs // 20)}
    rng = random.Random(seed)
    mapping = list(range(words))
    rng.shuffle(mapping)
    splits = {}
    for split in SPLITS:
        sources = [[f"s{rng.randrange(words)}" for _ in range(rng.randint(min_len, max_len))]
                   for _ in range(sizes[split])]
        splits[split] = (sources, [[f"t{mapping[int(word[1:])]}" for word in reversed(s)] for s in sources])
    return ParallelCorpus(splits)


def vocabularies(corpus: ParallelCorpus, max_size: int) -> tuple[Vocabulary, Vocabulary]:
    """Source and target vocabularies of the training split (PAD, UNK, BOS, EOS first)."""
    sources, targets = corpus.splits["train"]
    return (Vocabulary.from_tokens((word for sentence in sources for word in sentence), max_size, SPECIALS),
            Vocabulary.from_tokens((word for sentence in targets for word in sentence), max_size, SPECIALS))


@dataclass
class Batch:
    """Padded ``[steps, batch]`` tensors: the source, the decoder input (BOS + target) and output (target +
    EOS), and the reference target sentences (tokens)."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    references: list[list[str]]


def _pad(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(sequences), padding_value=0)  # [steps, batch]


def make_batches(pairs: tuple[list[list[str]], list[list[str]]], src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                 batch_size: int, shuffle_seed: int | None = None) -> list[Batch]:
    """Padded batches of the sentence pairs, in order or shuffled with ``shuffle_seed``."""
    order = list(range(len(pairs[0])))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    bos, eos = torch.tensor([tgt_vocab.index[BOS]]), torch.tensor([tgt_vocab.index[EOS]])
    batches = []
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        targets = [tgt_vocab.encode(pairs[1][i]) for i in chosen]
        batches.append(Batch(_pad([src_vocab.encode(pairs[0][i]) for i in chosen]),
                             _pad([torch.cat([bos, t]) for t in targets]), _pad([torch.cat([t, eos]) for t in targets]),
                             [pairs[1][i] for i in chosen]))
    return batches
