"""The generated text-classification task and the small BERT-style encoder of the transformer example.

Task ("majority topic"): each sequence starts with a ``[CLS]`` token (id 0) and holds filler words plus words of
two topics at random positions, ``n`` words of the label's topic and ``n - 1`` of another (``n`` in 2..4); the
label is the topic with more words. Solving it needs counting across positions, which attention does.
"""
from __future__ import annotations

import torch
from torch import nn

from distiller.transformers import convert_attention

__all__ = ["make_topic_task", "BertStyleClassifier"]


def make_topic_task(samples: int, seq_len: int = 32, vocab: int = 128, classes: int = 4, topic_words: int = 6,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token ids [samples, seq_len], labels [samples])`` of the majority-topic task (deterministic in ``seed``).

    Ids: 0 is ``[CLS]``; topic ``c`` owns ids ``1 + c * topic_words ...``; the rest are filler words.
    """
    g = torch.Generator().manual_seed(seed)
    first_filler = 1 + classes * topic_words
    if vocab <= first_filler or seq_len < 9:
        raise ValueError(f"vocab must exceed {first_filler} and seq_len be at least 9")
    ids = torch.randint(first_filler, vocab, (samples, seq_len), generator=g)
    labels = torch.randint(0, classes, (samples,), generator=g)
    other = (labels + torch.randint(1, classes, (samples,), generator=g)) % classes
    count = torch.randint(2, 5, (samples,), generator=g)                      # label topic words; other: count - 1
    slots = torch.arange(7).expand(samples, 7)
    topic = torch.where(slots < count[:, None], labels[:, None],
                        torch.where(slots < 2 * count[:, None] - 1, other[:, None], -1))
    positions = torch.rand(samples, seq_len - 1, generator=g).argsort(dim=1)[:, :7] + 1
    words = 1 + topic * topic_words + torch.randint(0, topic_words, (samples, 7), generator=g)
    placed = torch.where(topic >= 0, words, ids.gather(1, positions))
    ids.scatter_(1, positions, placed)
    ids[:, 0] = 0
    return ids, labels


class BertStyleClassifier(nn.Module):
    """Token + position embeddings with LayerNorm, an ``nn.TransformerEncoder`` (post-norm, GELU) and a linear
    classifier on the ``[CLS]`` position; attention converted to
    :class:`~distiller.transformers.DistillerMultiheadAttention` (set ``convert=False`` to keep PyTorch's)."""

    def __init__(self, vocab: int = 128, classes: int = 4, dim: int = 64, heads: int = 8, ffn: int = 256,
                 layers: int = 2, max_len: int = 64, dropout: float = 0.1, convert: bool = True) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.classifier = nn.Linear(dim, classes)
        if convert:
            convert_attention(self)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        return self.classifier(self.encoder(self.norm(x))[:, 0])
