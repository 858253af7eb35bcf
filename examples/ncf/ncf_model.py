"""NeuMF: Generalized Matrix Factorization and a Multi-Layer Perceptron over separate user/item embeddings, fused
by a final linear layer (He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017).

The GMF product and the concatenations are :mod:`distiller.modules` layers, so post-training quantization gives
them ranges of their own.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.modules import Concat, EltwiseMult


class NeuMF(nn.Module):
    """Scores (logits) of user-item pairs.

    Args:
        num_users, num_items: table sizes.
        factors: GMF embedding size (the paper's predictive factors).
        mlp_layers: MLP widths; the first is the concatenated user+item embedding (half each), e.g. [64, 32, 16, 8].
    Raises:
        ArgumentError: an odd first MLP width, or fewer than two MLP widths.
    """

    def __init__(self, num_users: int, num_items: int, factors: int = 8,
                 mlp_layers: Sequence[int] = (64, 32, 16, 8)) -> None:
        super().__init__()
        if len(mlp_layers) < 2 or mlp_layers[0] % 2:
            raise ArgumentError(f"mlp_layers must list at least two widths, the first even (user and item halves), "
                                f"got {list(mlp_layers)}", argument="mlp_layers")
        self.gmf_user = nn.Embedding(num_users, factors)
        self.gmf_item = nn.Embedding(num_items, factors)
        self.mlp_user = nn.Embedding(num_users, mlp_layers[0] // 2)
        self.mlp_item = nn.Embedding(num_items, mlp_layers[0] // 2)
        self.gmf_mult = EltwiseMult()
        self.mlp_concat = Concat(dim=-1)
        self.mlp = nn.Sequential(*(layer for width, out in zip(mlp_layers, mlp_layers[1:])
                                   for layer in (nn.Linear(width, out), nn.ReLU())))
        self.final_concat = Concat(dim=-1)
        self.predict = nn.Linear(factors + mlp_layers[-1], 1)
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=0.01)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the pairs ``(users[i], items[i])``, shaped as ``users``."""
        gmf = self.gmf_mult(self.gmf_user(users), self.gmf_item(items))
        mlp = self.mlp(self.mlp_concat(self.mlp_user(users), self.mlp_item(items)))
        return self.predict(self.final_concat(gmf, mlp)).squeeze(-1)
