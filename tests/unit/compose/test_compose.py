"""The Python fusion API (distiller.compose): the same policies as the YAML path, training through the chain,
masks and speedup, and bad configurations refused with clear errors."""
import pytest
import torch
import yaml

import distiller
from distiller.apputils import save_checkpoint
from distiller.compose import Distiller, Pruner, Quantizer
from distiller.config import dict_config
from distiller.errors import ArgumentError, UnmatchedNameError
from distiller.models import create_model


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model(False, "digits", "simplenet_cifar", parallel=False)


def _batches(n=3):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(n)]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return {"arch": "simplenet_cifar", "dataset": "digits",
            "checkpoint": save_checkpoint(0, "simplenet_cifar", _model(seed=7),
                                          dir=str(tmp_path_factory.mktemp("teacher")))}


def _chain(model, teacher):
    pruner = Pruner(model, [{"op_types": ["Conv2d"], "sparsity": 0.5, "granularity": "filter",
                             "group_dependency": "Graph"},
                            {"op_names": ["fc1"], "sparsity": 0.8}], ending_epoch=2)
    return Distiller.from_compressor(pruner, teacher=teacher, temperature=2.0, starting_epoch=1)


def _policies(scheduler):
    return [(type(p).__name__, scheduler.sched_metadata[p]["starting_epoch"], scheduler.sched_metadata[p]["ending_epoch"])
            for p in dict.fromkeys(p for epoch in sorted(scheduler.policies) for p in scheduler.policies[epoch])]


def test_the_python_chain_builds_the_same_policies_as_its_yaml(teacher):
    chain = _chain(_model(), teacher)
    text = chain.to_yaml(epochs=3)
    assert yaml.safe_load(text) == chain.schedule(epochs=3)
    model = _model()
    from_python = dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), chain.schedule(epochs=3))
    model = _model()
    from_yaml = dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), yaml.safe_load(text))
    assert _policies(from_python) == _policies(from_yaml) == [
        ("PruningPolicy", 0, 2), ("PruningPolicy", 0, 2), ("KnowledgeDistillation", 1, 3)]
    assert from_python.state_dict()["policies"].keys() == from_yaml.state_dict()["policies"].keys()


def test_compress_trains_prunes_distils_and_speedup_removes_the_pruned_filters(teacher):
    model = _model()
    chain = _chain(model, teacher)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    chain.compress(_batches(), epochs=3, optimizer=optimizer)
    pruner = chain.previous
    masks = pruner.get_masks()
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight"}
    assert distiller.sparsity(model.fc1.weight) == pytest.approx(0.8, abs=0.01)
    kept_filters = int(masks["conv1.weight"].flatten(1).any(dim=1).sum())
    assert kept_filters == model.conv1.out_channels // 2
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    distiller.thinning.speedup(model, x, masks)
    assert model.conv1.out_channels == kept_filters
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_quantizer_entries_become_overrides_of_the_selected_modules_only():
    torch.manual_seed(0)
    model = create_model(False, "digits", "resnet20_cifar", parallel=False)
    quantizer = Quantizer(model, [{"op_types": ["Conv2d"], "op_names": ["layer1\\..*"], "quant_bits": {"weight": 4}},
                                  {"op_names": ["layer1.0.relu1"], "quant_bits": {"output": 8}},
                                  {"op_names": ["fc"], "quant_bits": 8}], mode="ASYMMETRIC_UNSIGNED")
    instance = quantizer.schedule(epochs=2)["quantizers"]["quantizer0"]
    assert instance["overrides"]["layer1\\.0\\.conv1"] == {"bits_weights": 4, "bits_activations": None}
    assert instance["overrides"]["layer1\\.0\\.relu1"] == {"bits_weights": None, "bits_activations": 8}
    assert instance["overrides"]["fc"] == {"bits_weights": 8, "bits_activations": 8}
    assert len(instance["overrides"]) == 6 + 1 + 1
    assert instance["bits_weights"] is None and instance["mode"] == "ASYMMETRIC_UNSIGNED"
    assert "&id" not in quantizer.to_yaml(epochs=2), "plain YAML: no anchors for repeated settings"
    quantizer.compress(_batches(2), epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    assert len(torch.unique(model.layer1[0].conv1.weight.detach())) <= 16
    assert len(torch.unique(model.layer2[0].conv1.weight.detach())) > 256, "layer2 was not selected: it stays float"


@pytest.mark.parametrize("build, message", [
    (lambda m: Pruner(m, [{"op_types": ["Conv2d"], "sparsity": 0.5, "granularty": "filter"}]),
     "unknown key.*'granularty'.*did you mean 'granularity'"),
    (lambda m: Pruner(m, [{"op_types": ["Conv3d"], "sparsity": 0.5}]), "no weighted 'Conv3d' module"),
    (lambda m: Pruner(m, [{"op_types": ["Conv2d"]}]), "needs 'sparsity'"),
    (lambda m: Pruner(m, [{"sparsity": 0.5}]), "selects no module"),
    (lambda m: Pruner(m, [{"op_types": ["Conv2d"], "sparsity": 0.5, "granularity": "block"}]), "'block'"),
    (lambda m: Pruner(m, {"op_types": ["Conv2d"]}), "non-empty list of dicts"),
    (lambda m: Pruner(m, [{"op_types": ["Linear"], "op_names": ["conv1"], "sparsity": 0.5}]), "selects no module"),
    (lambda m: Quantizer(m, [{"op_types": ["Conv2d"], "quant_bits": {"weights": 4}}]), "quant_bits"),
    (lambda m: Quantizer.from_compressor(Quantizer(m, [{"op_types": ["Conv2d"], "quant_bits": 8}]),
                                         [{"op_types": ["Linear"], "quant_bits": 8}]), "one quantizer per run"),
    (lambda m: Pruner(m, [{"op_types": ["Conv2d"], "sparsity": 0.5}]).to_yaml(), "pass epochs=N"),
    (lambda m: Pruner(m, [{"op_types": ["Conv2d"], "sparsity": 0.5}], starting_epoch=3).to_yaml(epochs=2),
     "starting_epoch 3 is not before ending_epoch 2"),
])
def test_bad_configurations_are_refused_before_any_work(build, message):
    with pytest.raises(ArgumentError, match=message):
        build(_model())


def test_unknown_op_names_suggest_the_closest_module():
    with pytest.raises(UnmatchedNameError, match="did you mean .*'conv1'"):
        Pruner(_model(), [{"op_names": ["convl"], "sparsity": 0.5}])


def test_a_chain_compresses_one_model():
    pruner = Pruner(_model(), [{"op_types": ["Conv2d"], "sparsity": 0.5}])
    with pytest.raises(ArgumentError, match="one model"):
        Quantizer(_model(), [{"op_types": ["Conv2d"], "quant_bits": 8}], previous=pruner)


def test_masks_need_a_compressed_run():
    with pytest.raises(ArgumentError, match="compress"):
        Pruner(_model(), [{"op_types": ["Conv2d"], "sparsity": 0.5}]).get_masks()
