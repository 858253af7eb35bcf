"""Attention heads are channels: matrix products and softmax tie each head's query, key and value features,
so thinning removes whole heads (when the head count is computed from the tensor, not a literal)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.graph import DependencyGraph
from distiller.thinning import prune_and_thin, remove_filters


class SelfAttention(nn.Module):
    def __init__(self, dim=8, head_dim=2, fused=False):
        super().__init__()
        self.head_dim, self.fused = head_dim, fused
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).chunk(3, dim=-1)                     # the head count is computed (-1)
        q, k, v = (qkv[i].reshape(batch, tokens, -1, self.head_dim).transpose(1, 2) for i in range(3))
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Block(nn.Module):
    def __init__(self, fused=False):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attention = SelfAttention(fused=fused)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.embed(x)
        return self.head(x + self.attention(x))


@pytest.mark.parametrize("fused", [False, True])
def test_each_head_is_one_channel_spanning_query_key_and_value(fused):
    deps = DependencyGraph(Block(fused), torch.randn(1, 5, 4))
    qkv = deps.channels("attention.qkv", "out_features").reshape(3, 4, 2)   # (q, k, v) x heads x head_dim
    assert torch.equal(qkv, qkv[:1, :, :1].expand(3, 4, 2)) and qkv[0, :, 0].unique().numel() == 4
    assert torch.equal(deps.channels("attention.proj", "in_features"), qkv[0].reshape(-1))


@pytest.mark.parametrize("fused", [False, True])
def test_prune_and_thin_removes_whole_heads(fused):
    torch.manual_seed(0)
    model = Block(fused).eval()
    with torch.no_grad():
        model.attention.qkv.weight.view(3, 4, 2, 8)[:, [1, 2]] *= 0.01   # heads 1 and 2 are the weakest
    x = torch.randn(2, 5, 4)
    _, report = prune_and_thin(model, x[:1], 0.5)
    assert report.recipe.modules["attention.qkv"]["out_features"] == [0, 1, 6, 7, 8, 9, 14, 15, 16, 17, 22, 23]
    assert report.recipe.modules["attention.proj"]["in_features"] == [0, 1, 6, 7]
    assert model(x).shape == (2, 5, 3)


@pytest.mark.parametrize("fused", [False, True])
def test_a_zeroed_head_is_removed_exactly(fused):
    torch.manual_seed(0)
    model = Block(fused).eval()
    with torch.no_grad():
        model.attention.qkv.weight.view(3, 4, 2, 8)[:, 3] = 0
        model.attention.qkv.bias.view(3, 4, 2)[:, 3] = 0
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x[:1])
    assert recipe.modules["attention.proj"] == {"in_features": [0, 1, 2, 3, 4, 5]}
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


class CrossChannelSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 2)

    def forward(self, x):
        return self.b(self.a(x).softmax(dim=-1))


def test_a_softmax_over_channels_keeps_them_whole():
    deps = DependencyGraph(CrossChannelSoftmax(), torch.randn(1, 4))
    assert all("'softmax'" in deps.blocked[c] for c in deps.channels("a", "out_features").tolist())
