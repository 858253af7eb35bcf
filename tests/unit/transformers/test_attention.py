"""DistillerMultiheadAttention computes what nn.MultiheadAttention computes, masks included."""
import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.testing import TinyTransformer
from distiller.transformers import DistillerMultiheadAttention, convert_attention


def _pair(batch_first, bias=True):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4, bias=bias, batch_first=batch_first).eval()
    return mha, DistillerMultiheadAttention.from_torch(mha)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_same_outputs_and_weights_with_padding_and_causal_masks(batch_first, need_weights):
    mha, ours = _pair(batch_first)
    x = torch.randn(2, 5, 8) if batch_first else torch.randn(5, 2, 8)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    kwargs = dict(key_padding_mask=padding, attn_mask=causal, need_weights=need_weights)
    expected, expected_weights = mha(x, x, x, **kwargs)
    actual, weights = ours(x, x, x, **kwargs)
    torch.testing.assert_close(actual, expected)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights)
    else:
        assert weights is None


def test_cross_attention_and_per_head_float_masks_without_bias():
    mha, ours = _pair(True, bias=False)
    query, memory = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    mask = torch.randn(2 * 4, 3, 6)
    torch.testing.assert_close(ours(query, memory, memory, attn_mask=mask, average_attn_weights=False),
                               mha(query, memory, memory, attn_mask=mask, average_attn_weights=False))


def test_converted_encoder_matches_in_eval_and_train_mode(images):
    torch.manual_seed(0)
    model = TinyTransformer()
    expected = [model.eval()(images), model.train()(images)]
    convert_attention(model)
    assert isinstance(model.encoder.layers[1].self_attn, DistillerMultiheadAttention)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    actual = [model.eval()(images), model.train()(images)]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_layers_it_cannot_express_are_refused():
    with pytest.raises(ArgumentError, match="add_bias_kv"):
        DistillerMultiheadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    with pytest.raises(ArgumentError, match="not divisible"):
        DistillerMultiheadAttention(8, 3)
