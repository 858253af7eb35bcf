"""Hugging Face ``transformers`` BERT-style models: the layouts of their attention heads and FFN neurons.

Importing this module (done automatically once ``transformers`` is imported, see
:class:`~distiller.transformers.units.UnitFamily`) adds two layouts to
:data:`~distiller.transformers.ATTENTION_HEADS` and :data:`~distiller.transformers.FFN_NEURONS`, so
:class:`~distiller.transformers.AttentionHeadPruner`, :class:`~distiller.transformers.FFNNeuronPruner`, their AGP
variants, :func:`~distiller.transformers.thin_transformer`, :func:`~distiller.transformers.prune_attention_heads`
and :func:`~distiller.transformers.prune_ffn_neurons` work on ``BertModel`` and the ``BertFor...`` heads:

* head ``h`` of a ``BertAttention`` owns rows ``h * d .. (h + 1) * d`` of ``self.query``, ``self.key`` and
  ``self.value`` (weights and biases) and those columns of ``output.dense``, its reader;
* FFN neuron ``j`` of a ``BertLayer`` owns row ``j`` of ``intermediate.dense`` and column ``j`` of
  ``output.dense``, its reader.

Layers are selected by name as usual, e.g. ``'bert\\.encoder\\.layer\\.\\d+\\.attention'`` for heads and
``'bert\\.encoder\\.layer\\.\\d+'`` for FFN neurons. Removal slices the ``nn.Linear`` layers with
:func:`distiller.thinning.surgery.apply_edits`, which also slices the optimizer state and the pruning masks, and
then updates ``num_attention_heads``/``all_head_size``. ``PreTrainedModel.prune_heads`` is not used: it slices
neither optimizer state nor masks, and transformers 5 removed it. A thinned model keeps its original ``config``
(``intermediate_size``, ``num_attention_heads``): save it with ``torch.save``/distiller checkpoints, not
``save_pretrained``.

Models with the same layout under other class names (RoBERTa, ELECTRA, ...) join with
``ATTENTION_HEADS.add(BertAttentionHeads((RobertaAttention,)))`` and
``FFN_NEURONS.add(FFNNeurons((RobertaLayer,), 'intermediate.dense', 'output.dense'))``.
"""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..errors import ArgumentError, MissingDependencyError
from .units import ATTENTION_HEADS, FFN_NEURONS, FFNNeurons, UnitSlice, Units

try:
    from transformers.models.bert.modeling_bert import BertAttention, BertLayer
except ImportError as error:  # pragma: no cover - exercised only without transformers
    raise MissingDependencyError("distiller.transformers.huggingface needs Hugging Face transformers: "
                                 "pip install 'distiller[hf]'") from error

__all__ = ["BertAttentionHeads", "BERT_ATTENTION_HEADS", "BERT_FFN_NEURONS"]

_PROJECTIONS = ("self.query", "self.key", "self.value")


class BertAttentionHeads(Units):
    """The heads of BERT-style attention blocks: ``self.{query,key,value}`` and ``output.dense`` Linears.

    Michel et al. 2019, "Are Sixteen Heads Really Better than One?" (arXiv:1905.10650) prune exactly these
    heads of BERT; the importance here is the heads' weight magnitude (see :mod:`~distiller.transformers.units`).

    Args:
        module_types: the attention block types (``BertAttention`` by default).
    """

    what = "attention heads"
    reader = "output.dense.weight"

    def __init__(self, module_types: tuple[type[nn.Module], ...] = (BertAttention,)) -> None:
        self.module_types = module_types

    def slices(self, module: nn.Module) -> list[UnitSlice]:
        head_dim = int(cast(int, module.get_submodule("self").attention_head_size))
        widths = {name: cast(nn.Linear, module.get_submodule(name)).out_features for name in _PROJECTIONS}
        inner = cast(nn.Linear, module.get_submodule("output.dense")).in_features
        if set(widths.values()) != {inner} or inner % head_dim:
            raise ArgumentError(f"a {type(module).__name__} whose query/key/value widths {list(widths.values())} "
                                f"and output width {inner} are not one whole number of {head_dim}-wide heads "
                                f"has no per-head layout that distiller knows")
        cols = torch.arange(inner).reshape(inner // head_dim, head_dim)
        present = [f"{name}.{tensor}" for name in _PROJECTIONS for tensor in ("weight", "bias")
                   if getattr(module.get_submodule(name), tensor) is not None]
        return [UnitSlice(name, 0, cols) for name in present] + [UnitSlice(self.reader, 1, cols)]

    def resized(self, module: nn.Module) -> None:
        attention: Any = module.get_submodule("self")   # transformers' class: untyped attributes
        width = int(attention.query.out_features)
        attention.num_attention_heads = width // int(attention.attention_head_size)
        attention.all_head_size = width


BERT_ATTENTION_HEADS = BertAttentionHeads()
BERT_FFN_NEURONS = FFNNeurons((BertLayer,), "intermediate.dense", "output.dense")

ATTENTION_HEADS.add(BERT_ATTENTION_HEADS)
FFN_NEURONS.add(BERT_FFN_NEURONS)
