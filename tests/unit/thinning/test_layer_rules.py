"""Layer rules: transposed convolutions and GroupNorm out of the box, a user's rule for a new layer type, and
transformers (a class token and attention are blocked with their reason, the MLP hidden width is thinned)."""
import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from distiller.graph import LayerRule, register_layer_rule, select
from distiller.thinning import ThinningError, apply_thinning_recipe, prune_and_thin, remove_filters


def _zero_filters(weight, indices, dim=0):
    with torch.no_grad():
        weight.index_fill_(dim, torch.tensor(indices), 0.0)


class Decoder(nn.Module):
    def __init__(self, groups=1):
        super().__init__()
        self.encode = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.up(torch.relu(self.encode(x))))))


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_convolutions_lose_zero_inputs_and_outputs(groups):
    model = Decoder(groups).eval()
    _zero_filters(model.encode.weight, [1, 5])             # one input channel of each group of 'up'
    _zero_filters(model.encode.bias, [1, 5])
    _zero_filters(model.up.weight, [0, 4], dim=1) if groups == 1 else _zero_filters(model.up.weight, [0], dim=1)
    _zero_filters(model.up.bias, [0, 4] if groups == 1 else [0, 3])   # groups=2: out channels 0 and 3 (local 0)
    x = torch.randn(2, 3, 5, 5)
    expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x[:1])
    kept_out = [1, 2, 3, 5] if groups == 1 else [1, 2, 4, 5]
    assert recipe.modules["encode"]["out_channels"] == [0, 2, 3, 4, 6, 7]
    assert recipe.modules["up"] == {"in_channels": [0, 2, 3, 4, 6, 7], "out_channels": kept_out}
    assert model.up.weight.shape == (6, 4 // groups, 3, 3) and model.bn.num_features == 4
    torch.testing.assert_close(model(x), expected)


def test_grouped_transposed_convolution_keeps_equal_counts_per_group():
    model = Decoder(groups=2).eval()
    _zero_filters(model.encode.weight, [0, 1, 5])          # group 0 could lose two, group 1 one
    _zero_filters(model.encode.bias, [0, 1, 5])
    x = torch.randn(1, 3, 4, 4)
    expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x)
    kept = recipe.modules["up"]["in_channels"]
    assert len(kept) == 6 and sum(c < 4 for c in kept) == 3 and 5 not in kept
    torch.testing.assert_close(model(x), expected)


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.gn(self.conv(x))))


def test_group_norm_loses_whole_groups_only():
    model = GroupNormNet().eval()
    with torch.no_grad():
        model.gn.weight.uniform_(0.5, 1.5)
        model.gn.bias.uniform_(-1, 1)
        model.gn.bias[[2, 3]] = 0                       # group 1's shift is zero: a zero group stays zero
    _zero_filters(model.conv.weight, [2, 3, 4])         # all of group 1, half of group 2
    _zero_filters(model.conv.bias, [2, 3, 4])
    x = torch.randn(2, 3, 6, 6)
    expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x[:1])
    assert recipe.modules["gn"]["num_channels"] == [0, 1, 4, 5, 6, 7]
    assert (model.gn.num_groups, model.gn.num_channels) == (3, 6)
    torch.testing.assert_close(model(x), expected)


def test_surgery_refuses_to_split_a_group_norm_group():
    model = GroupNormNet()
    with pytest.raises(ThinningError, match="whole groups of 2 channels"):
        apply_thinning_recipe(model, {"kind": "thinning", "modules": {"gn": {"num_channels": [0, 1, 2]}}})
    assert model.gn.num_channels == 8


class ChannelScale(nn.Module):
    """A layer distiller has no rule for: one learned scale per channel (dim 1)."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return x * self.scale.view(1, -1, 1, 1)


class ScaledNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.scale = ChannelScale(8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.scale(self.conv(x)))


class ChannelScaleRule(LayerRule):
    dims = {"channels": "param"}

    def flow(self, call):
        x = call.inputs[0]
        call.uses("channels", call.channels(x, 1))
        return x

    def edits(self, module, attr, keep):
        return [("scale", select(0, keep))], {"channels": keep.numel()}


def test_a_user_registered_rule_makes_a_new_layer_type_thinnable():
    model = ScaledNet()
    x = torch.randn(1, 3, 4, 4)
    _, report = prune_and_thin(model, x, 0.5)           # traced into: the parameter blocks the channels
    assert model.conv.out_channels == 8
    assert report.blocked["it meets tensor attribute 'scale.scale', which thinning does not slice"] == 8

    register_layer_rule(ChannelScale)(ChannelScaleRule)
    model = ScaledNet()
    with torch.no_grad():
        model.conv.weight[[1, 6]] *= 0.01
    _, report = prune_and_thin(model, x, 0.25)
    assert report.recipe.modules["scale"] == {"channels": [0, 2, 3, 4, 5, 7]}
    assert model.scale.scale.shape == (6,) and model(x).shape == (1, 2, 4, 4)


def test_register_layer_rule_takes_module_classes():
    with pytest.raises(TypeError, match="nn.Module subclasses"):
        register_layer_rule("Conv2d")


def test_vision_transformer_thins_its_mlp_and_blocks_the_class_token_stream():
    torch.manual_seed(0)
    model = VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                              num_classes=3).eval()
    x = torch.randn(1, 3, 16, 16)
    model, report = prune_and_thin(model, x, 0.5)
    assert set(report.recipe.modules) == {f"encoder.layers.encoder_layer_{i}.mlp.{j}" for i in (0, 1) for j in (0, 3)}
    assert model.encoder.layers[0].mlp[0].out_features == 8 and model.encoder.layers[1].mlp[3].in_features == 8
    # the residual stream: the patch embedding and the MLP outputs (8 filters each); the head reaches the output
    assert report.blocked == {"it meets tensor attribute 'class_token', which thinning does not slice": 24,
                              "it reaches the model output": 3}
    assert model(x).shape == (1, 3)
