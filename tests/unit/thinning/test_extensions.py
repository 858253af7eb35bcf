"""FilterRemover / ChannelRemover / StructureRemover scheduled from Distiller-style YAML."""
import pytest
import torch
import yaml

from distiller import CompressionScheduler, ScheduleError
from distiller.config import dict_config
from distiller.testing import TinyResidualNet, train_with_scheduler
from distiller.thinning import ChannelRemover, FilterRemover, StructureRemover, ThinningError

SCHEDULE = """
pruners:
  filter_pruner:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [conv2.weight]

extensions:
  net_thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: resnet20_cifar
    dataset: cifar10

policies:
  - pruner: {instance_name: filter_pruner}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [1]
"""


class Chain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_distiller_yaml_prunes_then_thins_during_training(batches):
    torch.manual_seed(0)
    model = Chain()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = dict_config(model, optimizer, yaml.safe_load(SCHEDULE))
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    assert model.conv2.out_channels == 4 and model.fc.in_features == 4
    assert [t["kind"] for t in scheduler.model_transforms] == ["thinning"]
    assert scheduler.zeros_mask_dict["conv2.weight"].mask.shape == model.conv2.weight.shape
    assert optimizer.state[model.conv2.weight]["momentum_buffer"].shape == model.conv2.weight.shape


def test_the_example_input_comes_from_the_training_loop(batches):
    model = TinyResidualNet()
    with torch.no_grad():
        model.block_conv1.weight[:3] = 0
    remover = StructureRemover("remove_filters")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(remover, epochs=[0])
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
    assert remover.example_input[0].shape == (1, 3, 8, 8) and not remover.example_input[0].any()
    assert model.block_conv1.out_channels == 5


def test_without_a_forward_pass_or_dataset_the_error_says_what_to_pass():
    model = TinyResidualNet()
    remover = FilterRemover()
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(remover, epochs=[0])
    scheduler.on_epoch_begin(0)
    with pytest.raises(ThinningError, match="dummy_input"):
        scheduler.on_epoch_end(0)


def test_unknown_thinning_function_suggests_the_known_ones():
    with pytest.raises(ValueError, match="did you mean 'remove_channels'"):
        ChannelRemover("remove_channel")
    bad = {"extensions": {"thinner": {"class": "FilterRemover", "thinning_func_str": "remove_filter"}},
           "policies": [{"extension": {"instance_name": "thinner"}, "epochs": [0]}]}
    with pytest.raises(ScheduleError, match="remove_filters"):
        dict_config(TinyResidualNet(), None, bad)
