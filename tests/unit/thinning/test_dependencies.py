"""Which channels go together, which cannot go, and why: residual intersections, concatenation slices,
grouped convolutions, blocking nodes (logged or raised), the layout check and round_to."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.scheduler import create_model_masks_dict
from distiller.thinning import ThinningError, remove_channels, remove_filters
from distiller.testing import TinyConcatNet


def _zero_filters(conv, indices):
    with torch.no_grad():
        conv.weight[indices] = 0
        if conv.bias is not None:
            conv.bias[indices] = 0


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        return self.head(F.relu(self.conv(x) + x))


def test_residual_channels_go_only_where_every_producer_is_zero():
    model = Residual()
    _zero_filters(model.stem, [1, 2, 5])
    _zero_filters(model.conv, [2, 5, 6])
    recipe = remove_filters(model, None, dummy_input=torch.randn(1, 3, 8, 8))
    kept = [0, 1, 3, 4, 6, 7]  # 2 and 5 are zero in both producers; 1 and 6 in one only
    assert recipe.modules["stem"]["out_channels"] == kept
    assert recipe.modules["conv"] == {"in_channels": kept, "out_channels": kept}
    assert recipe.modules["head"] == {"in_channels": kept}
    assert model.conv.weight.shape == (6, 6, 3, 3)


def test_concatenation_maps_each_producer_to_its_slice_of_the_consumer():
    model = TinyConcatNet()
    _zero_filters(model.a, [0])
    _zero_filters(model.b, [1, 5])
    x = torch.randn(2, 3, 4, 4)
    expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x)
    assert recipe.modules["head"]["in_channels"] == [1, 2, 3, 4, 6, 7, 8]
    torch.testing.assert_close(model(x), expected)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1, bias=False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.grouped(self.expand(x)))


def test_grouped_convolution_keeps_equal_channel_counts_per_group():
    model = Grouped()
    _zero_filters(model.expand, [0, 1, 5])  # group 0 could lose 2, group 1 only 1
    x = torch.randn(2, 3, 6, 6)
    expected = model(x)
    recipe = remove_filters(model, None, dummy_input=x)
    kept = recipe.modules["expand"]["out_channels"]
    assert len(kept) == 6 and sum(c < 4 for c in kept) == 3 and 5 not in kept
    assert model.grouped.groups == 2 and model.grouped.weight.shape == (8, 3, 3, 3)
    torch.testing.assert_close(model(x), expected)


class LiteralView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).view(-1, 8))


class Softmaxed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.softmax(self.conv(x), dim=1))


@pytest.mark.parametrize("model_class,blocker", [(LiteralView, "'view'"), (Softmaxed, "'softmax'")])
def test_blocked_channels_stay_with_the_blocking_node_logged(model_class, blocker, caplog):
    model = model_class()
    _zero_filters(model.conv, [1, 3])
    with caplog.at_level(logging.INFO, logger="distiller.thinning"):
        recipe = remove_filters(model, None, dummy_input=torch.randn(1, 3, 4, 4))
    assert not recipe and model.conv.out_channels == 8
    assert "2 channel(s) left whole because" in caplog.text and blocker in caplog.text


def test_strict_raises_naming_the_blocking_node_and_changes_nothing():
    model = Softmaxed()
    _zero_filters(model.conv, [1, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ThinningError, match="'softmax'"):
        remove_filters(model, None, dummy_input=torch.randn(1, 3, 4, 4), strict=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_output_channels_are_never_removed(caplog):
    model = TinyConcatNet()
    _zero_filters(model.head, [1])
    with caplog.at_level(logging.INFO, logger="distiller.thinning"):
        recipe = remove_filters(model, None, dummy_input=torch.randn(1, 3, 4, 4))
    assert not recipe and "reaches the model output" in caplog.text


def test_round_to_keeps_multiples_keeping_the_strongest_extra_filters():
    conv = nn.Conv2d(3, 16, 1, bias=False)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(16, 2, 1))
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, 17.0).reshape(16, 1, 1, 1).expand(16, 3, 1, 1))
        conv.weight[3] = 100.0
    masks = create_model_masks_dict(model)
    masks["0.weight"].mask = torch.ones_like(conv.weight)
    masks["0.weight"].mask[:5] = 0         # soft mask: 11 filters left, 12 needed for round_to=4
    recipe = remove_filters(model, masks, dummy_input=torch.randn(1, 3, 2, 2), round_to=4)
    assert recipe.modules["0"]["out_channels"] == [3] + list(range(5, 16))   # filter 3 is the strongest
    assert masks["0.weight"].mask.shape == (12, 3, 1, 1)


def test_round_to_must_be_a_positive_integer():
    with pytest.raises(ThinningError, match="round_to"):
        remove_filters(TinyConcatNet(), None, dummy_input=torch.randn(1, 3, 4, 4), round_to=0)


def test_unused_channels_go_with_their_producers():
    model = Residual()
    with torch.no_grad():
        model.conv.weight[:, 2] = 0
        model.head.weight[:, 2] = 0        # channel 2 of the residual stream: read by nobody
        model.conv.weight[:, 4] = 0        # channel 4 is still read by the head
    x = torch.randn(1, 3, 6, 6)
    expected = model(x)
    recipe = remove_channels(model, None, dummy_input=x)
    assert recipe.modules["stem"]["out_channels"] == [0, 1, 3, 4, 5, 6, 7]
    torch.testing.assert_close(model(x), expected)


def test_missing_example_input_is_a_clear_error():
    with pytest.raises(ThinningError, match="dummy_input"):
        remove_filters(TinyConcatNet(), None)


@pytest.mark.parametrize("shift,warned", [(0.5, True), (0.0, False)])
def test_removing_zero_filters_with_a_constant_shift_is_warned_about(shift, warned, caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    with torch.no_grad():
        model[0].weight[1] = 0
        model[1].bias.fill_(shift)
    x = torch.randn(1, 3, 2, 2)
    expected = model(x)
    with caplog.at_level(logging.WARNING, logger="distiller.thinning"):
        remove_filters(model, None, dummy_input=x)
    assert model[1].num_features == 3
    assert ("1 zero-filter channel(s) that still carry a constant (bias or BatchNorm shift: '1' (1 ch))"
            in caplog.text) is warned
    assert torch.allclose(model(x), expected) is not warned
