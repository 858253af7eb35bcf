"""group_dependency: Graph: ranking and masking whole channel dependency groups (with their BatchNorms and
readers), so that thinning removes every zeroed channel and keeps the masked model's outputs."""
import pytest
import torch
import yaml

import distiller
from distiller import CompressionScheduler, PruningPolicy
from distiller.errors import ArgumentError
from distiller.pruning import L1RankedStructureParameterPruner, L1RankedStructureParameterPruner_AGP, StructuredAGP
from distiller.scheduler import create_model_masks_dict
from distiller.testing import TinyCNN, TinyResidualNet, train_with_scheduler
from distiller.thinning import remove_filters


def _graded(conv, order):
    """Sets filter f of ``conv`` to all-equal weights ``order[f]`` (its L1 rank)."""
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(order, dtype=torch.float32).view(-1, 1, 1, 1).expand_as(conv.weight))


def _shifted_batchnorms(model, generator):
    """Random BN statistics, scales and shifts (a zero channel leaves the BN as a non-zero constant)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, 0.5, 2),
                                          (module.weight, 0.5, 1.5), (module.bias, -1, 1)):
                    tensor.copy_(torch.empty(module.num_features).uniform_(low, high, generator=generator))


def _prune_once(pruner, model):
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(pruner, None), epochs=[0])
    scheduler.on_epoch_begin(0)
    return scheduler.zeros_mask_dict


def _zero_rows(mask):
    return (mask.reshape(mask.shape[0], -1) == 0).all(dim=1).nonzero().reshape(-1).tolist()


def test_filters_follow_the_ranking_and_their_batchnorm_and_readers_are_masked_at_once():
    torch.manual_seed(0)
    model = TinyCNN(width=8)
    _graded(model.conv1, [5, 1, 7, 2, 8, 3, 6, 4])
    plain = _prune_once(L1RankedStructureParameterPruner("p", "Filters", 0.5, ["conv1.weight"]), TinyCNN(width=8))
    pruner = L1RankedStructureParameterPruner("g", "Filters", 0.5, ["conv1.weight"], group_dependency="Graph",
                                              dummy_input=torch.randn(1, 3, 8, 8))
    masks = _prune_once(pruner, model)
    assert _zero_rows(masks["conv1.weight"].mask) == [1, 3, 5, 7]
    assert _zero_rows(plain["conv1.weight"].mask) != []        # (the plain pruner masks the weight alone)
    assert plain["bn1.weight"].mask is None
    for name in ("bn1.weight", "bn1.bias"):
        assert masks[name].mask.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
        assert (dict(model.named_parameters())[name][[1, 3, 5, 7]] == 0).all()   # applied at once
    reading = masks["conv2.weight"].mask
    assert not reading[:, [1, 3, 5, 7]].any() and reading[:, [0, 2, 4, 6]].all()


def test_a_residual_stream_is_pruned_in_every_layer_that_adds_to_or_reads_it():
    torch.manual_seed(0)
    model = TinyResidualNet(width=8)
    _graded(model.block_conv2, [8, 7, 6, 5, 4, 3, 2, 1])       # only the ranked weight decides
    pruner = L1RankedStructureParameterPruner("g", "Filters", 0.25, ["block_conv2.weight"],
                                              group_dependency="Graph", dummy_input=torch.randn(1, 3, 8, 8))
    masks = _prune_once(pruner, model)
    for name in ("conv1.weight", "block_conv2.weight"):
        assert _zero_rows(masks[name].mask) == [6, 7], name
    for name in ("bn1.weight", "bn1.bias", "block_bn2.weight", "block_bn2.bias"):
        assert masks[name].mask.tolist() == [1.0] * 6 + [0.0] * 2, name
    assert not masks["block_conv1.weight"].mask[:, 6:].any() and not masks["fc.weight"].mask[:, 6:].any()
    assert masks["block_conv1.weight"].mask[:, :6].all() and masks["block_bn1.weight"].mask is None


def test_channels_group_type_masks_the_readers_and_the_producing_filters():
    torch.manual_seed(0)
    model = TinyCNN(width=4)
    with torch.no_grad():
        model.conv2.weight.fill_(1.0)
        model.conv2.weight[:, [0, 2]] = 0.1
    pruner = L1RankedStructureParameterPruner("c", "Channels", 0.5, ["conv2.weight"], group_dependency="Graph",
                                              dummy_input=torch.randn(1, 3, 8, 8))
    masks = _prune_once(pruner, model)
    assert not masks["conv2.weight"].mask[:, [0, 2]].any() and masks["conv2.weight"].mask[:, [1, 3]].all()
    assert _zero_rows(masks["conv1.weight"].mask) == [0, 2]
    assert masks["bn1.bias"].mask.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_agp_on_dependency_groups_trains_with_zero_batchnorms_and_thins_exactly(batches):
    torch.manual_seed(0)
    model = TinyResidualNet(width=8)
    _shifted_batchnorms(model, torch.Generator().manual_seed(1))
    convs = ["conv1.weight", "block_conv1.weight", "block_conv2.weight"]
    pruner = L1RankedStructureParameterPruner_AGP("agp", 0.2, 0.5, "Filters", convs, group_dependency="Graph",
                                                  dummy_input=torch.randn(1, 3, 8, 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(pruner, None), starting_epoch=0, ending_epoch=3)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    masks = scheduler.zeros_mask_dict
    pruned = {name: _zero_rows(masks[name].mask) for name in convs}
    assert [len(rows) for rows in pruned.values()] == [4, 4, 4]
    for bn, conv in (("bn1", "conv1.weight"), ("block_bn1", "block_conv1.weight"), ("block_bn2", "conv1.weight")):
        for tensor in (getattr(model, bn).weight, getattr(model, bn).bias):  # zero through momentum and decay
            assert (tensor[pruned[conv]] == 0).all(), bn
    model.eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    remove_filters(model, masks, dummy_input=x[:1], optimizer=optimizer)
    assert model.conv1.out_channels == 4 and model.block_conv1.out_channels == 4
    assert all(masker.mask is None or bool(masker.mask.all()) for masker in masks.values())
    with torch.no_grad():
        assert (model(x) - expected).abs().max().item() <= 1e-4


def test_graph_from_yaml_records_the_first_training_input(batches):
    torch.manual_seed(0)
    model = TinyCNN(width=8)
    schedule = yaml.safe_load("""
pruners:
  taylor:
    class: StructuredAGP
    importance: Taylor
    group_dependency: Graph
    group_type: Filters
    initial_sparsity: 0.25
    final_sparsity: 0.5
    weights: [conv1.weight, conv2.weight]
policies:
  - pruner: {instance_name: taylor}
    starting_epoch: 1
    ending_epoch: 3
""")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    masks = scheduler.zeros_mask_dict
    assert len(_zero_rows(masks["conv1.weight"].mask)) == 4 and len(_zero_rows(masks["conv2.weight"].mask)) == 8
    assert (masks["bn2.bias"].mask == 0).sum() == 8


def test_graph_needs_an_example_input_and_takes_a_dataset_shape():
    model = TinyCNN(width=4)
    pruner = L1RankedStructureParameterPruner("g", "Filters", 0.5, ["conv1.weight"], group_dependency="Graph")
    with pytest.raises(ArgumentError, match="g: group_dependency 'Graph' builds the model's graph from an example "
                                            "input: pass dummy_input"):
        pruner.set_param_mask(model.conv1.weight, "conv1.weight", create_model_masks_dict(model),
                              {"model": model, "current_epoch": 0})
    pruner = L1RankedStructureParameterPruner("g", "Filters", 0.5, ["conv1.weight"], group_dependency="Graph",
                                              dataset="cifar10")
    masks = _prune_once(pruner, model)
    assert len(_zero_rows(masks["conv1.weight"].mask)) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"group_type": "Rows"}, "group_dependency 'Graph' prunes 'Filters' or 'Channels', not 'Rows'"),
    ({"weights": ["bn1.weight"]}, "'bn1.weight' is not the weight of a layer that has them"),
    ({"dataset": "imagenette"}, "imagenette"),
])
def test_graph_arguments_are_checked(kwargs, message):
    model = TinyCNN(width=4)
    args = dict({"name": "g", "group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv1.weight"],
                 "group_dependency": "Graph", "dummy_input": torch.randn(1, 3, 8, 8)}, **kwargs)
    with pytest.raises(ArgumentError, match=message):
        _prune_once(L1RankedStructureParameterPruner(**args), model)


def test_importance_is_a_registered_name_an_instance_or_a_function():
    torch.manual_seed(0)
    model = TinyCNN(width=8)
    _graded(model.conv1, [5, 1, 7, 2, 8, 3, 6, 4])
    largest_first = StructuredAGP("f", 0.5, 0.5, "Filters", ["conv1.weight"], group_dependency="Graph",
                                  importance=lambda structures: -structures.rows().abs().sum(dim=1),
                                  dummy_input=torch.randn(1, 3, 8, 8))
    masks = create_model_masks_dict(model)
    largest_first.set_param_mask(model.conv1.weight, "conv1.weight", masks,
                                 {"model": model, "current_epoch": 0, "starting_epoch": 0, "ending_epoch": 2,
                                  "frequency": 1})
    assert _zero_rows(masks["conv1.weight"].mask) == [0, 2, 4, 6]
    with pytest.raises(ArgumentError, match="did you mean 'Taylor'"):
        StructuredAGP("f", 0.1, 0.5, "Filters", ["conv1.weight"], importance="Tailor")
    with pytest.raises(ArgumentError, match="pass an importance criterion"):
        StructuredAGP("f", 0.1, 0.5, "Filters", ["conv1.weight"])


@pytest.mark.cuda
def test_graph_masks_follow_the_model_to_the_gpu():
    torch.manual_seed(0)
    model = TinyResidualNet(width=8).cuda().eval()
    _shifted_batchnorms(model, torch.Generator().manual_seed(1))
    pruner = L1RankedStructureParameterPruner("g", "Filters", 0.5, ["conv1.weight", "block_conv1.weight"],
                                              group_dependency="Graph", dummy_input=torch.randn(1, 3, 8, 8))
    masks = _prune_once(pruner, model)
    assert masks["bn1.weight"].mask.device.type == "cuda" and masks["conv1.weight"].mask.device.type == "cuda"
    x = torch.randn(2, 3, 8, 8, device="cuda")
    with torch.no_grad():
        expected = model(x)
    remove_filters(model, masks, dummy_input=x[:1])
    assert model.conv1.out_channels == 4
    with torch.no_grad():
        assert (model(x) - expected).abs().max().item() <= 1e-4
