"""Transformer pruning from YAML schedules: unstructured AGP on the Linear weights, structured pruners' errors."""
import pytest
import torch

import distiller
from distiller.testing import TinyTransformer, train_with_scheduler


def test_unstructured_agp_prunes_the_encoder_linear_weights(batches):
    torch.manual_seed(0)
    model = TinyTransformer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    schedule = {"version": 1,
                "pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1,
                                    "final_sparsity": 0.6,
                                    "weights": [r"encoder\.layers\.\d+\.linear[12]\.weight",
                                                r"encoder\.layers\.\d+\.self_attn\.in_proj_weight"]}},
                "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 3,
                              "frequency": 1}]}
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=3)
    for layer in model.encoder.layers:
        for weight in (layer.linear1.weight, layer.linear2.weight, layer.self_attn.in_proj_weight):
            assert distiller.sparsity(weight) == pytest.approx(0.6, abs=0.02)
        assert distiller.sparsity(layer.self_attn.out_proj.weight) == 0


@pytest.mark.parametrize("modules, message", [
    (["encoder.layers.0.linear1"], "'encoder.layers.0.linear1' is a Linear"),
    (["encoder.layers.0.self_atn"], "did you mean 'encoder.layers.0.self_attn'"),
])
def test_schedule_errors_name_the_yaml_path(modules, message, tiny_transformer):
    schedule = {"version": 1, "pruners": {"heads": {"class": "AttentionHeadPruner", "desired_sparsity": 0.5,
                                                    "modules": modules}},
                "policies": [{"pruner": {"instance_name": "heads"}, "epochs": [0]}]}
    with pytest.raises(distiller.ScheduleError, match=message) as error:
        distiller.config.dict_config(tiny_transformer, None, schedule)
    assert "pruners.heads" in str(error.value)


def test_sparsity_one_is_refused(tiny_transformer):
    schedule = {"version": 1, "pruners": {"heads": {"class": "AttentionHeadPruner_AGP", "initial_sparsity": 0.0,
                                                    "final_sparsity": 1.0, "modules": [".*self_attn"]}},
                "policies": [{"pruner": {"instance_name": "heads"}, "epochs": [0, 1]}]}
    with pytest.raises(distiller.ScheduleError, match="final_sparsity"):
        distiller.config.dict_config(tiny_transformer, None, schedule)
