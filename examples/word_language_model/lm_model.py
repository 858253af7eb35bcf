"""The word-level LSTM language model of PyTorch's word_language_model example (embedding -> LSTM -> linear
decoder, optional tied embeddings), built from :class:`distiller.modules.DistillerLSTM` so that every gate is a
layer of its own that pruners and quantizers see.

Tying the decoder's weight to the embedding follows Press & Wolf, "Using the Output Embedding to Improve
Language Models" (EACL 2017) and Inan et al., "Tying Word Vectors and Word Classifiers" (ICLR 2017).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.modules import DistillerLSTM

#: An LSTM's ``(h, c)`` state.
State = tuple[torch.Tensor, torch.Tensor]


class RNNModel(nn.Module):
    """Embedding, a stacked LSTM and a decoder over the vocabulary.

    Args:
        ntoken: vocabulary size.
        ninp: embedding size.
        nhid: LSTM hidden size.
        nlayers: LSTM layers.
        dropout: dropout on the embeddings, between the LSTM layers and before the decoder.
        tie_weights: the decoder uses the embedding's weight (needs ``ninp == nhid``).
    Raises:
        ArgumentError: ``tie_weights`` with ``ninp != nhid``.
    """

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.5,
                 tie_weights: bool = False) -> None:
        super().__init__()
        if tie_weights and ninp != nhid:
            raise ArgumentError(f"--tied needs the embedding size ({ninp}) to equal the hidden size ({nhid})",
                                argument="tie_weights")
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = DistillerLSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.nlayers, self.nhid = nlayers, nhid
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if self.decoder.weight is not self.encoder.weight:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, hidden: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """``tokens`` ``[steps, batch]`` -> (logits ``[steps, batch, ntoken]``, the final ``(h, c)``)."""
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, batch_size: int) -> State:
        """Zero ``(h, c)`` states for ``batch_size`` sequences."""
        return self.rnn.init_hidden(batch_size)
