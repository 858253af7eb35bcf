"""A small GNMT-style encoder-decoder (Wu et al., "Google's Neural Machine Translation System", arXiv:1609.08144):
a bidirectional LSTM layer then a unidirectional one in the encoder, a stacked LSTM decoder, and attention over
the encoder's outputs (Luong, Pham & Manning, "Effective Approaches to Attention-based Neural Machine
Translation", EMNLP 2015: multiplicative scores, the context and the decoder output combined before the
classifier).

Every recurrent layer is a :class:`distiller.modules.DistillerLSTM` and the attention's products are
:class:`distiller.modules.BatchMatmul` layers, so post-training quantization reaches every gate and product.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from distiller.modules import BatchMatmul, Concat, DistillerLSTM

State = tuple[torch.Tensor, torch.Tensor]
#: Score of padded source positions (before the softmax): far below any real score.
_MASKED = -1e4


class Encoder(nn.Module):
    """Embedding, a bidirectional LSTM layer and a unidirectional one: ``[src_len, batch]`` ->
    ``[src_len, batch, hidden]``."""

    def __init__(self, vocab: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden, padding_idx=0)
        self.rnn_bidirectional = DistillerLSTM(hidden, hidden, bidirectional=True, dropout=0.0)
        self.rnn = DistillerLSTM(2 * hidden, hidden, dropout=0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        both, _ = self.rnn_bidirectional(self.dropout(self.embedding(src)))
        return self.rnn(self.dropout(both))[0]


class Attention(nn.Module):
    """Multiplicative ("general") attention of decoder outputs over encoder outputs, padding masked."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.scores = BatchMatmul()
        self.softmax = nn.Softmax(dim=-1)
        self.context = BatchMatmul()

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``queries`` ``[batch, tgt_len, hidden]``, ``keys`` ``[batch, src_len, hidden]``, ``padding``
        ``[batch, 1, src_len]`` (True at padded positions) -> contexts ``[batch, tgt_len, hidden]``."""
        scores = self.scores(self.query(queries), keys.transpose(1, 2)).masked_fill(padding, _MASKED)
        return self.context(self.softmax(scores), keys)


class Decoder(nn.Module):
    """Embedding, stacked LSTM, attention, ``tanh(W [output; context])`` and the classifier."""

    def __init__(self, vocab: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden, padding_idx=0)
        self.rnn = DistillerLSTM(hidden, hidden, layers, dropout=dropout)
        self.attention = Attention(hidden)
        self.concat = Concat(dim=2)
        self.attention_proj = nn.Linear(2 * hidden, hidden)
        self.act = nn.Tanh()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, vocab)

    def forward(self, tgt_in: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor,
                hidden: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """``tgt_in`` ``[tgt_len, batch]``, ``memory`` the encoder's outputs -> (logits
        ``[tgt_len, batch, vocab]``, LSTM state)."""
        output, hidden = self.rnn(self.dropout(self.embedding(tgt_in)), hidden)
        context = self.attention(output.transpose(0, 1), memory.transpose(0, 1), padding).transpose(0, 1)
        combined = self.act(self.attention_proj(self.concat(output, context)))
        return self.classifier(self.dropout(combined)), hidden


class GNMT(nn.Module):
    """Encoder-decoder translating padded ``[steps, batch]`` index tensors (padding index 0).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes.
        hidden: embedding and LSTM size.
        decoder_layers: LSTM layers of the decoder.
        dropout: dropout on embeddings and between layers.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, hidden: int = 128, decoder_layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = Encoder(src_vocab, hidden, dropout)
        self.decoder = Decoder(tgt_vocab, hidden, decoder_layers, dropout)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[tgt_len, batch, tgt_vocab]``."""
        return self.decoder(tgt_in, self.encoder(src), _padding(src))[0]

    @torch.no_grad()
    def translate(self, src: torch.Tensor, bos: int, eos: int, max_len: int) -> list[list[int]]:
        """Greedy decoding: each sentence's target indices, up to (not including) EOS or ``max_len`` words."""
        memory, padding = self.encoder(src), _padding(src)
        token = torch.full((1, src.size(1)), bos, dtype=torch.int64, device=src.device)
        hidden, steps = None, []
        for _ in range(max_len):
            logits, hidden = self.decoder(token, memory, padding, hidden)
            token = logits.argmax(dim=-1)
            steps.append(token[0])
        words = torch.stack(steps, dim=1).tolist()
        return [sentence[:sentence.index(eos)] if eos in sentence else sentence for sentence in words]


def _padding(src: torch.Tensor) -> torch.Tensor:
    """``[batch, 1, src_len]``, True where ``src`` is padding."""
    return (src == 0).t().unsqueeze(1)
