"""Multi-head attention made of ``nn.Linear`` layers, so its heads can be removed and its projections quantized.

``torch.nn.MultiheadAttention`` keeps the query/key/value projection as one raw parameter (``in_proj_weight``)
and requires ``num_heads * head_dim == embed_dim``: a layer with fewer heads than the model width allows
cannot be expressed, and the quantizers, which replace ``nn.Linear`` modules, never see the projection.
:class:`DistillerMultiheadAttention` computes the same function from two ``nn.Linear`` layers (``in_proj``:
queries, keys and values of every head; ``out_proj``) and derives the head count from ``in_proj``'s size, so
removing a head's rows and columns (see :mod:`distiller.transformers.thinning`) leaves a working layer.
:func:`convert_attention` swaps it in for every ``nn.MultiheadAttention`` of a model, weights included.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError
from ..model_tools import model_setattr

msglogger = logging.getLogger(__name__)

__all__ = ["DistillerMultiheadAttention", "convert_attention"]


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: not attended) as an additive float mask; float masks are already additive."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class DistillerMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (Vaswani et al. 2017, "Attention Is All You Need") with its projections as
    ``nn.Linear`` layers and a head count that follows their size.

    Takes the arguments and masks of ``nn.MultiheadAttention.forward`` and returns ``(output, weights)``.
    Keys and values must have the query's width (``kdim == vdim == embed_dim``).

    Args:
        embed_dim: the model width (input and output features).
        num_heads: the number of heads.
        dropout: dropout probability on the attention weights (training only).
        bias: whether the projections have biases.
        batch_first: inputs are ``(batch, sequence, features)`` instead of ``(sequence, batch, features)``.
        head_dim: features per head (default ``embed_dim // num_heads``).

    Example:
        >>> layer = nn.TransformerEncoderLayer(64, 4, batch_first=True)
        >>> layer.self_attn = DistillerMultiheadAttention.from_torch(layer.self_attn)
    """

    #: Read by ``nn.TransformerEncoderLayer``: its fused inference kernel takes ``nn.MultiheadAttention``'s
    #: packed weights, so it must fall back to calling this module.
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, head_dim: Optional[int] = None) -> None:
        super().__init__()
        if head_dim is None:
            if num_heads <= 0 or embed_dim % num_heads:
                raise ArgumentError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; pass head_dim",
                                    argument="num_heads")
            head_dim = embed_dim // num_heads
        self.embed_dim, self.head_dim, self.dropout, self.batch_first = embed_dim, head_dim, dropout, batch_first
        self.in_proj = nn.Linear(embed_dim, 3 * num_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias)

    @property
    def num_heads(self) -> int:
        """The number of heads, from the size of ``in_proj`` (it falls when heads are removed)."""
        return self.in_proj.out_features // (3 * self.head_dim)

    @property
    def in_proj_bias(self) -> Optional[torch.Tensor]:
        """``in_proj``'s bias, None without one or when a quantizer wrapped ``in_proj``
        (``nn.TransformerEncoderLayer`` reads this attribute)."""
        return getattr(self.in_proj, "bias", None)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> DistillerMultiheadAttention:
        """The equivalent of ``mha`` (same parameters, device, dtype and mode).

        Raises:
            ArgumentError: for layers it cannot express: different key/value widths, ``add_bias_kv`` or
                ``add_zero_attn``.
        """
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ArgumentError(f"{mha!r}: DistillerMultiheadAttention supports attention whose keys and values "
                                f"have the query's width, without add_bias_kv or add_zero_attn")
        bias = mha.in_proj_bias is not None
        weight = mha.in_proj_weight
        converted = cls(mha.embed_dim, mha.num_heads, mha.dropout, bias, mha.batch_first)
        converted.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            converted.in_proj.weight.copy_(weight)
            converted.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                converted.in_proj.bias.copy_(mha.in_proj_bias)
                converted.out_proj.bias.copy_(mha.out_proj.bias)
        return converted.train(mha.training)

    def _project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values, always through ``in_proj`` (so a quantized ``in_proj`` computes them);
        cross-attention projects each input fully and keeps its third."""
        if query is key and key is value:  # self-attention: one matrix product
            q, k, v = self.in_proj(query).chunk(3, dim=-1)
            return q, k, v
        return (self.in_proj(query).chunk(3, dim=-1)[0], self.in_proj(key).chunk(3, dim=-1)[1],
                self.in_proj(value).chunk(3, dim=-1)[2])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, -1, self.head_dim).transpose(1, 2)   # (batch, heads, length, head_dim)

    def _mask(self, attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor], batch: int,
              q_len: int, k_len: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            if mask.dim() == 3:
                if mask.shape[0] != batch * self.num_heads:
                    raise ArgumentError(f"attn_mask has {mask.shape[0]} per-head masks; this layer needs batch x "
                                        f"heads = {batch * self.num_heads}", argument="attn_mask")
                mask = mask.view(batch, self.num_heads, q_len, k_len)
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, dtype).view(batch, 1, 1, k_len)
            mask = padding if mask is None else mask + padding
        return mask

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``nn.MultiheadAttention.forward``'s arguments and results (batched inputs)."""
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        q, k, v = (self._heads(x) for x in self._project(query, key, value))
        batch, _, q_len, _ = q.shape
        mask = self._mask(attn_mask, key_padding_mask, batch, q_len, k.shape[2], q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5
            if mask is None and is_causal:
                mask = _additive(torch.ones(q_len, k.shape[2], dtype=torch.bool, device=q.device).triu(1), q.dtype)
            weights = (scores if mask is None else scores + mask).softmax(dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                                 is_causal=is_causal and mask is None)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, q_len, -1))
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"


def convert_attention(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.MultiheadAttention`` of ``model`` (in place) by its
    :class:`DistillerMultiheadAttention` equivalent; returns ``model`` (the converted layer when ``model`` is one).

    The model's ``nn.TransformerEncoder`` stacks stop converting padded inputs to nested tensors (a path that
    only ``nn.MultiheadAttention`` supports). Parameter names change from ``self_attn.in_proj_weight``
    to ``self_attn.in_proj.weight``: convert before building optimizers and schedules.

    Raises:
        ArgumentError: for an attention layer that :meth:`DistillerMultiheadAttention.from_torch` refuses.
    """
    if type(model) is nn.MultiheadAttention:
        return DistillerMultiheadAttention.from_torch(model)
    targets = [(name, module) for name, module in model.named_modules() if type(module) is nn.MultiheadAttention]
    for name, module in targets:
        model_setattr(model, name, DistillerMultiheadAttention.from_torch(module))
    for encoder in model.modules():
        if isinstance(encoder, nn.TransformerEncoder):
            encoder.use_nested_tensor = False
    msglogger.debug("converted %d attention layers", len(targets))
    return model
