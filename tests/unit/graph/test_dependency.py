"""DependencyGraph: channels shared by module dimensions, dependency groups, blocked channels, scores and the
removable selection (layout constraints and the thinned-shape check)."""
import torch
from torch import nn

from distiller.graph import DependencyGraph, DependencyGroup
from distiller.models import create_model
from distiller.testing import TinyConcatNet


def _resnet20():
    torch.manual_seed(0)
    return create_model(False, "cifar10", "resnet20_cifar", parallel=False, device_ids=-1).eval()


def test_a_residual_stream_is_one_group_of_channels_shared_by_every_layer_on_it():
    deps = DependencyGraph(_resnet20(), torch.randn(1, 3, 32, 32))
    stream = deps.channels("conv1", "out_channels")
    for name, attr in [("bn1", "num_features"), ("layer1.0.conv1", "in_channels"), ("layer1.0.conv2", "out_channels"),
                       ("layer1.2.bn2", "num_features"), ("layer2.0.conv1", "in_channels")]:
        assert torch.equal(deps.channels(name, attr), stream), (name, attr)
    groups = deps.groups()
    # the model input, the three stage streams, the nine blocks' inner widths, the classifier's outputs
    assert [len(g) for g in groups] == [3, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64, 10]
    stream_group = groups[1]
    assert isinstance(stream_group, DependencyGroup) and sorted(stream_group.channels) == sorted(stream.tolist())
    assert stream_group.members[:3] == (("conv1", "out_channels"), ("bn1", "num_features"),
                                        ("layer1.0.conv1", "in_channels"))
    assert len(stream_group.members) == 13 and not stream_group.blocked
    assert set(groups[0].blocked.values()) == {"it is the model input 'x'"}
    assert groups[-1].members == (("fc", "out_features"),)
    assert set(groups[-1].blocked.values()) == {"it reaches the model output"} and len(groups[-1].blocked) == 10


def test_a_concatenation_maps_each_producer_to_its_slice_of_the_reader():
    deps = DependencyGraph(TinyConcatNet(), torch.randn(1, 3, 4, 4))
    reader = deps.channels("head", "in_channels")
    assert torch.equal(reader, torch.cat([deps.channels("a", "out_channels"), deps.channels("b", "out_channels")]))
    group = next(g for g in deps.groups() if ("head", "in_channels") in g.members)
    assert set(group.members) == {("a", "out_channels"), ("b", "out_channels"), ("head", "in_channels")}


def test_channel_scores_normalize_each_layer_and_sum_over_the_coupled_ones():
    deps = DependencyGraph(_resnet20(), torch.randn(1, 3, 32, 32))
    given = {"conv1": torch.arange(1.0, 17.0), "layer1.0.conv2": torch.full((16,), 2.0)}
    scores = deps.channel_scores("out", lambda name, attr: given.get(name))
    stream = deps.channels("conv1", "out_channels")
    torch.testing.assert_close(scores[stream], torch.arange(1.0, 17.0, dtype=torch.float64) / 8.5 + 1.0)
    others = torch.ones(deps.size, dtype=torch.bool)
    others[stream] = False
    assert not scores[others].any()


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.grouped(self.expand(x)))


def test_removable_keeps_equal_counts_per_group_and_reports_blocked_selections():
    deps = DependencyGraph(Grouped(), torch.randn(1, 3, 4, 4))
    expand = deps.channels("expand", "out_channels")
    head = deps.channels("head", "out_channels")
    wanted = torch.zeros(deps.size, dtype=torch.bool)
    wanted[expand[[0, 1, 5]]] = True
    wanted[head[0]] = True                        # reaches the model output: blocked
    importance = torch.zeros(deps.size, dtype=torch.float64)
    importance[expand[1]] = 1.0                   # of channels 0 and 1, channel 1 is added back first
    keep, stuck = deps.removable(lambda d: wanted, importance)
    assert keep[expand].tolist() == [False, True, True, True, True, False, True, True]
    assert stuck.nonzero().reshape(-1).tolist() == [int(head[0])]
    assert deps.kept_positions(keep)[("grouped", "in_channels")].tolist() == [1, 2, 3, 4, 6, 7]


class SizedView(nn.Module):
    """A view whose size comes from another tensor's channel count: removing that tensor's channels would
    change the view, so they are blocked by the thinned-shape check (not by the analysis)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        return self.head(b.mean(dim=(2, 3)).repeat(1, a.shape[1]))


def test_channels_that_reach_an_op_through_a_size_are_blocked_with_the_reason():
    deps = DependencyGraph(SizedView(), torch.randn(1, 3, 2, 2))
    a = deps.channels("a", "out_channels")
    wanted = torch.zeros(deps.size, dtype=torch.bool)
    wanted[a[:2]] = True
    keep, _ = deps.removable(lambda d: wanted, torch.zeros(deps.size))
    assert keep[a].all()
    assert "depends on them through a size or an index" in deps.blocked[int(a[0])]
