"""Head and FFN-neuron ranking, masks and the layer selection of the transformer pruners."""
import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError, UnmatchedNameError
from distiller.transformers import ATTENTION_HEADS, FFN_NEURONS, UnitRanking, find_modules


def _weaken(attention, head, factor):
    """Scales every weight head ``head`` owns (q/k/v rows, bias, output columns)."""
    inner, hd = attention.out_proj.in_features, attention.head_dim
    with torch.no_grad():
        for part in range(3):
            attention.in_proj.weight[part * inner + head * hd:part * inner + (head + 1) * hd] *= factor
            attention.in_proj.bias[part * inner + head * hd:part * inner + (head + 1) * hd] *= factor
        attention.out_proj.weight[:, head * hd:(head + 1) * hd] *= factor


def test_head_importance_is_the_l1_norm_of_the_heads_rows_and_columns(tiny_transformer):
    attention = tiny_transformer.encoder.layers[0].self_attn
    scores = ATTENTION_HEADS.importance(attention)
    w, b, out = attention.in_proj.weight.detach(), attention.in_proj.bias.detach(), attention.out_proj.weight.detach()
    rows = [r for part in range(3) for r in range(part * 8 + 2, part * 8 + 4)]   # head 1 of 4, head_dim 2
    expected = w[rows].abs().sum() + b[rows].abs().sum() + out[:, 2:4].abs().sum()
    assert scores.shape == (4,)
    torch.testing.assert_close(scores[1], expected.double())


def test_ranking_keeps_the_strongest_heads_per_layer_and_never_all_pruned(tiny_transformer):
    _weaken(tiny_transformer.encoder.layers[0].self_attn, 2, 0.01)
    _weaken(tiny_transformer.encoder.layers[0].self_attn, 0, 0.1)
    _weaken(tiny_transformer.encoder.layers[1].self_attn, 3, 0.01)
    ranking = UnitRanking("p", ATTENTION_HEADS, tiny_transformer, [r"encoder\.layers\.\d+\.self_attn"])
    layer0, layer1 = (tiny_transformer.encoder.layers[i].self_attn for i in range(2))
    assert ranking.keep(layer0, 0.5).tolist() == [False, True, False, True]
    assert ranking.keep(layer1, 0.25).tolist() == [True, True, True, False]
    assert ranking.keep(layer1, 0.99).sum() == 1                      # floor(0.99 * 4) = 3 of 4 heads
    masks = ranking.masks(tiny_transformer, 0.5)
    out_mask = masks["encoder.layers.0.self_attn.out_proj.weight"]
    assert out_mask[:, [0, 1, 4, 5]].eq(0).all() and out_mask[:, [2, 3, 6, 7]].eq(1).all()
    in_mask = masks["encoder.layers.0.self_attn.in_proj.weight"]
    assert in_mask.view(3, 4, 2, 8)[:, [0, 2]].eq(0).all() and in_mask.view(3, 4, 2, 8)[:, [1, 3]].eq(1).all()
    assert masks["encoder.layers.0.self_attn.in_proj.bias"].view(3, 4, 2)[:, [0, 2]].eq(0).all()


def test_ffn_neurons_own_a_linear1_row_and_a_linear2_column(tiny_transformer):
    layer = tiny_transformer.encoder.layers[1]
    with torch.no_grad():
        layer.linear2.weight[:, 5] = 0
    scores = FFN_NEURONS.importance(layer)
    expected = (layer.linear1.weight[7].abs().sum() + layer.linear1.bias[7].abs()
                + layer.linear2.weight[:, 7].abs().sum())
    torch.testing.assert_close(scores[7], expected.detach().double())
    assert FFN_NEURONS.zero_units(layer).nonzero().flatten().tolist() == [5]
    masks = FFN_NEURONS.masks(layer, torch.arange(16) != 3)
    assert masks["linear1.weight"][3].eq(0).all() and masks["linear1.bias"][3] == 0
    assert masks["linear2.weight"][:, 3].eq(0).all() and masks["linear2.weight"].sum() == 8 * 15


def test_torch_attention_layers_are_ranked_too():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4)
    with torch.no_grad():
        mha.out_proj.weight[:, 4:6] = 0
    assert ATTENTION_HEADS.zero_units(mha).tolist() == [False, False, True, False]
    assert set(ATTENTION_HEADS.masks(mha, torch.tensor([True, False, True, True]))) == \
        {"in_proj_weight", "in_proj_bias", "out_proj.weight"}


def test_layer_selection_errors_name_the_layer(tiny_transformer):
    assert find_modules(tiny_transformer, FFN_NEURONS, [r"encoder\.layers\.\d+"], "p") == \
        ["encoder.layers.0", "encoder.layers.1"]
    with pytest.raises(ArgumentError, match="'encoder.layers.0.linear1' is a Linear; attention heads live in"):
        find_modules(tiny_transformer, ATTENTION_HEADS, ["encoder.layers.0.linear1"], "p")
    with pytest.raises(UnmatchedNameError, match="did you mean 'encoder.layers.0.self_attn'"):
        find_modules(tiny_transformer, ATTENTION_HEADS, ["encoder.layers.0.self_atn"], "p")
    with pytest.raises(UnmatchedNameError):
        find_modules(nn.Sequential(nn.Linear(2, 2)), ATTENTION_HEADS, ["attn"], "p")
