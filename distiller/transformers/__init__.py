"""Compression of transformer models: structured pruning of attention heads and FFN neurons, their removal
(thinning), and attention layers whose projections the quantizers see.

* :class:`DistillerMultiheadAttention`, :func:`convert_attention`: ``nn.MultiheadAttention`` as two
  ``nn.Linear`` layers with a head count that can shrink (same outputs).
* :class:`AttentionHeadPruner`, :class:`AttentionHeadPruner_AGP`, :class:`FFNNeuronPruner`,
  :class:`FFNNeuronPruner_AGP`: schedulable pruners (registered for YAML schedules).
* :func:`thin_transformer`, :func:`prune_attention_heads`, :func:`prune_ffn_neurons`: physical removal.
* Hugging Face BERT-style models (``BertAttention`` heads, ``BertLayer`` FFN neurons) work with all of the
  above once ``transformers`` is imported (:mod:`distiller.transformers.huggingface`, optional extra ``hf``).

Unstructured pruning (e.g. :class:`~distiller.pruning.AutomatedGradualPruner` on ``linear1.weight``),
post-training quantization (:class:`~distiller.quantization.PostTrainLinearQuantizer`, after
:func:`convert_attention`) and knowledge distillation apply to these models unchanged.
"""
from .attention import DistillerMultiheadAttention, convert_attention
from .pruners import (AttentionHeadPruner, AttentionHeadPruner_AGP, FFNNeuronPruner, FFNNeuronPruner_AGP,
                      TransformerUnitPruner, TransformerUnitPruner_AGP, UnitRanking)
from .thinning import prune_attention_heads, prune_ffn_neurons, remove_units, thin_transformer
from .units import (ATTENTION_HEADS, FFN_NEURONS, AttentionHeads, FFNNeurons, UnitFamily, UnitSlice, Units,
                    find_modules)

__all__ = ["DistillerMultiheadAttention", "convert_attention", "AttentionHeadPruner", "AttentionHeadPruner_AGP",
           "FFNNeuronPruner", "FFNNeuronPruner_AGP", "TransformerUnitPruner", "TransformerUnitPruner_AGP",
           "UnitRanking", "thin_transformer", "prune_attention_heads", "prune_ffn_neurons", "remove_units",
           "ATTENTION_HEADS", "FFN_NEURONS", "AttentionHeads", "FFNNeurons", "UnitFamily", "UnitSlice", "Units",
           "find_modules"]
