"""NeuMF: Generalized Matrix Factorization and a Multi-Layer Perceptron over separate user/item embeddings, fused
by a final linear layer (He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017).

The GMF product, the concatenation and the final sum are :mod:`distiller.modules` layers, so post-training
quantization gives them ranges of their own. As in Distiller's NCF example, the final layer can be split in two
(``split_final``): ``predict_gmf(gmf) + predict_mlp(mlp)`` computes what one linear layer over ``[gmf; mlp]``
computes, but the GMF and MLP outputs, whose ranges differ widely, are not quantized as one tensor.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.modules import Concat, EltwiseAdd, EltwiseMult


class NeuMF(nn.Module):
    """Scores (logits) of user-item pairs.

    Args:
        num_users, num_items: table sizes.
        factors: GMF embedding size (the paper's predictive factors).
        mlp_layers: MLP widths; the first is the concatenated user+item embedding (half each), e.g. [64, 32, 16, 8].
        split_final: a final linear layer for each branch, their outputs added (else one over their concatenation).
    Raises:
        ArgumentError: an odd first MLP width, or fewer than two MLP widths.
    """

    def __init__(self, num_users: int, num_items: int, factors: int = 8,
                 mlp_layers: Sequence[int] = (64, 32, 16, 8), split_final: bool = True) -> None:
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
        self.split_final = split_final
        if split_final:
            self.predict_gmf = nn.Linear(factors, 1)
            self.predict_mlp = nn.Linear(mlp_layers[-1], 1, bias=False)
            self.final_add = EltwiseAdd()
        else:
            self.final_concat = Concat(dim=-1)
            self.predict = nn.Linear(factors + mlp_layers[-1], 1)
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=0.01)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the pairs ``(users[i], items[i])``, shaped as ``users``."""
        gmf = self.gmf_mult(self.gmf_user(users), self.gmf_item(items))
        mlp = self.mlp(self.mlp_concat(self.mlp_user(users), self.mlp_item(items)))
        if self.split_final:
            return self.final_add(self.predict_gmf(gmf), self.predict_mlp(mlp)).squeeze(-1)
        return self.predict(self.final_concat(gmf, mlp)).squeeze(-1)
