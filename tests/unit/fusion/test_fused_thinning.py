"""Thinning inside fusion compression: a schedule with a QAT quantizer and a thinning extension, and the Python
chain Pruner (Graph) + Quantizer followed by speedup, with no hand-fixing of the quantization state."""
import pytest
import torch
import yaml

import distiller
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.compose import Pruner, Quantizer
from distiller.testing import TinyCNN, train_with_scheduler

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


def _outputs(model):
    model.eval()
    with torch.no_grad():
        return model(X)


def test_a_yaml_schedule_with_qat_thins_at_its_epoch_and_the_checkpoint_reloads(fused_schedule, model_and_optimizer,
                                                                                fusion_batches, tmp_path):
    schedule = fused_schedule()
    schedule["extensions"] = {"thinner": {"class": "FilterRemover", "thinning_func_str": "remove_filters"}}
    schedule["policies"].append({"extension": {"instance_name": "thinner"}, "epochs": [1]})
    path = tmp_path / "fused.yaml"
    path.write_text(yaml.safe_dump(schedule))
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.file_config(model, optimizer, str(path))
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1)
    assert model.conv1.float_weight.shape[0] == 8
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1, start_epoch=1)
    assert model.conv1.float_weight.shape == model.conv1.weight.shape == (4, 3, 3, 3)  # 50% filters pruned, removed
    assert model.bn1.num_features == 4 and model.conv2.float_weight.shape == (16, 4, 3, 3)
    assert [t["kind"] for t in scheduler.model_transforms] == ["quantization", "thinning"]
    assert scheduler.zeros_mask_dict["conv2.weight"].mask.shape == (16, 4, 3, 3)
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=1, start_epoch=2)  # training goes on
    assert model.conv2.weight.unique().numel() <= 16

    checkpoint = save_checkpoint(2, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    fresh, fresh_optimizer = model_and_optimizer(seed=5)
    fresh, _, _, _ = load_checkpoint(fresh, checkpoint, optimizer=fresh_optimizer)
    assert fresh.conv1.weight_scale.shape == model.conv1.weight_scale.shape
    assert torch.equal(_outputs(fresh), _outputs(model))


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_graph_pruner_and_qat_chain_then_speedup_keeps_the_quantized_outputs(per_channel, fusion_batches):
    torch.manual_seed(0)
    model = TinyCNN()
    pruner = Pruner(model, [{"op_types": ["Conv2d"], "sparsity": 0.5, "initial_sparsity": 0.0,
                             "granularity": "filter", "group_dependency": "Graph"}], ending_epoch=2)
    chain = Quantizer.from_compressor(pruner, [{"op_types": ["Conv2d", "Linear"], "quant_bits": {"weight": 4}},
                                               {"op_types": ["ReLU"], "quant_bits": {"output": 8}}],
                                      mode="ASYMMETRIC_UNSIGNED", per_channel_wts=per_channel)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = chain.compress(fusion_batches, epochs=3, optimizer=optimizer)
    masks = pruner.get_masks()
    assert set(masks) == {"conv1.weight", "conv2.weight"}
    expected = _outputs(model)

    distiller.thinning.speedup(model, X, masks, optimizer=optimizer, scheduler=scheduler)
    assert model.conv1.weight.shape == (4, 3, 3, 3) and model.conv2.float_weight.shape == (8, 4, 3, 3)
    assert model.fc.float_weight.shape == (10, 8) and model.bn2.num_features == 8
    assert model.conv2.weight_scale.numel() == (8 if per_channel else 1)
    assert [t["kind"] for t in scheduler.model_transforms] == ["quantization", "thinning"]
    torch.testing.assert_close(_outputs(model), expected, rtol=0, atol=1e-6)
