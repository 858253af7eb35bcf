"""Implicit-feedback data for NCF: MovieLens-1M's ``ratings.dat`` or a generated set with latent structure, split
with the leave-one-out protocol of He et al., "Neural Collaborative Filtering" (WWW 2017).

Every rating counts as an interaction. Each user's latest interaction is held out for testing and ranked among
99 items the user never interacted with (sampled once, seeded); training pairs each remaining interaction with
``num_neg`` sampled non-interacted items per epoch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from distiller.errors import ArgumentError, InputFileError

#: Items ranked with each held-out item (the paper's 99 sampled negatives).
TEST_NEGATIVES = 99


@dataclass
class Interactions:
    """``(user, item, timestamp)`` triples (int64 arrays of equal length), ids from 0."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int


@dataclass
class LeaveOneOut:
    """Training pairs, each user's held-out item and its 99 negatives, and each user's interacted items."""

    train_users: np.ndarray
    train_items: np.ndarray
    test_items: np.ndarray            # [num_users]
    test_negatives: np.ndarray        # [num_users, TEST_NEGATIVES]
    seen: list[set[int]]
    num_users: int
    num_items: int


def read_movielens_ratings(directory: str) -> Interactions:
    """Reads MovieLens-1M's ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp`` lines); ids are remapped to
    0..n-1 in order of first appearance.

    Raises:
        InputFileError: no ``ratings.dat`` in ``directory``, or a malformed line (file and line number named).
    """
    path = os.path.join(directory, "ratings.dat")
    if not os.path.isfile(path):
        raise InputFileError(f"'{directory}' has no ratings.dat: pass the directory of MovieLens-1M (ml-1m), whose "
                             f"ratings.dat has UserID::MovieID::Rating::Timestamp lines")
    rows = []
    with open(path, encoding="latin-1") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.strip().split("::")
            try:
                user, item, _, stamp = (int(x) for x in fields)
            except ValueError:
                raise InputFileError(f"{path}:{number}: expected UserID::MovieID::Rating::Timestamp (integers), got "
                                     f"{line.strip()[:60]!r}") from None
            rows.append((user, item, stamp))
    if not rows:
        raise InputFileError(f"{path} holds no ratings")
    data = np.array(rows, dtype=np.int64)
    _, users = np.unique(data[:, 0], return_inverse=True)
    _, items = np.unique(data[:, 1], return_inverse=True)
    return Interactions(users, items, data[:, 2], int(users.max()) + 1, int(items.max()) + 1)


def generate_interactions(num_users: int, num_items: int, per_user: int, seed: int, dim: int = 8) -> Interactions:
    """Implicit feedback with latent structure: user and item factors are drawn from N(0, 1); each user interacts
    with ``per_user`` distinct items drawn with probabilities ``softmax(2 * u.v / sqrt(dim))`` plus a popularity
    term, in a random time order.

    Raises:
        ArgumentError: ``per_user + TEST_NEGATIVES + 1`` exceeds ``num_items``.
    """
    if per_user + TEST_NEGATIVES + 1 > num_items:
        raise ArgumentError(f"{num_items} items cannot give each user {per_user} interactions and "
                            f"{TEST_NEGATIVES} test negatives", argument="num_items")
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((num_users, dim))
    item_factors = rng.standard_normal((num_items, dim))
    popularity = rng.standard_normal(num_items)
    logits = 2.0 * user_factors @ item_factors.T / np.sqrt(dim) + popularity
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    users, items = [], []
    for user in range(num_users):
        chosen = rng.choice(num_items, size=per_user, replace=False, p=probabilities[user])
        users += [user] * per_user
        items += chosen.tolist()
    stamps = rng.permutation(len(users))
    return Interactions(np.array(users), np.array(items), stamps, num_users, num_items)


def leave_one_out(data: Interactions, seed: int) -> LeaveOneOut:
    """Holds out each user's latest interaction and samples its 99 test negatives (seeded).

    Raises:
        InputFileError: a user with fewer than 2 interactions, or too few items they never interacted with.
    """
    order = np.lexsort((data.timestamps, data.users))
    users, items = data.users[order], data.items[order]
    last = np.r_[np.nonzero(np.diff(users))[0], len(users) - 1]
    counts = np.bincount(users, minlength=data.num_users)
    if counts.min() < 2:
        raise InputFileError(f"user {int(counts.argmin())} has {int(counts.min())} interaction(s): leave-one-out "
                             f"needs at least 2 per user")
    seen: list[set[int]] = [set() for _ in range(data.num_users)]
    for user, item in zip(users.tolist(), items.tolist()):
        seen[user].add(item)
    rng = np.random.default_rng(seed)
    negatives = np.stack([_sample_unseen(rng, seen[user], data.num_items, TEST_NEGATIVES)
                          for user in range(data.num_users)])
    keep = np.ones(len(users), dtype=bool)
    keep[last] = False
    return LeaveOneOut(users[keep], items[keep], items[last], negatives, seen, data.num_users, data.num_items)


def _sample_unseen(rng: np.random.Generator, seen: set[int], num_items: int, count: int) -> np.ndarray:
    unseen = np.setdiff1d(np.arange(num_items), np.fromiter(seen, dtype=np.int64))
    if len(unseen) < count:
        raise InputFileError(f"a user interacted with {len(seen)} of {num_items} items: fewer than {count} are left "
                             f"to sample test negatives from")
    return rng.choice(unseen, size=count, replace=False)


def training_instances(split: LeaveOneOut, num_neg: int, rng: np.random.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(users, items, labels) of one epoch: every training interaction (label 1) and ``num_neg`` items per
    interaction that its user never interacted with (label 0), shuffled."""
    count = len(split.train_users)
    neg_users = np.repeat(split.train_users, num_neg)
    neg_items = rng.integers(0, split.num_items, size=len(neg_users))
    clash = np.array([item in split.seen[user] for user, item in zip(neg_users.tolist(), neg_items.tolist())])
    while clash.any():  # redraw the negatives that hit an interacted item
        neg_items[clash] = rng.integers(0, split.num_items, size=int(clash.sum()))
        clash[clash] = [item in split.seen[user] for user, item in zip(neg_users[clash].tolist(),
                                                                        neg_items[clash].tolist())]
    users = np.concatenate([split.train_users, neg_users])
    items = np.concatenate([split.train_items, neg_items])
    labels = np.concatenate([np.ones(count), np.zeros(len(neg_users))])
    order = rng.permutation(len(users))
    return (torch.from_numpy(users[order]), torch.from_numpy(items[order]),
            torch.from_numpy(labels[order]).float())


def test_candidates(split: LeaveOneOut) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) ``[num_users, 100]``: each user's held-out item (column 0) and its 99 negatives."""
    items = np.concatenate([split.test_items[:, None], split.test_negatives], axis=1)
    users = np.repeat(np.arange(split.num_users)[:, None], items.shape[1], axis=1)
    return torch.from_numpy(users), torch.from_numpy(items)
