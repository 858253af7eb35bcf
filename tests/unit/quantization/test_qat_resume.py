"""Resuming quantization-aware training from a checkpoint continues it exactly."""
import pytest
import torch

import distiller
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.testing import train_with_scheduler

OVERRIDES = {"conv1": {"bits_weights": None}, "fc": {"bits_weights": None}}
QUANTIZERS = {
    "range_linear": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8, "bits_weights": 4,
                     "mode": "asym_u", "per_channel_wts": True, "overrides": OVERRIDES},
    "range_linear_folded": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8,
                            "bits_weights": 4, "mode": "ASYMMETRIC_UNSIGNED", "fold_bn": True, "freeze_bn_delay": 4,
                            "overrides": OVERRIDES},
    "pact": {"class": "PACTQuantizer", "bits_activations": 4, "bits_weights": 4, "act_clip_init_val": 2.0,
             "act_clip_decay": 1e-3, "overrides": OVERRIDES},
    "dorefa": {"class": "DorefaQuantizer", "bits_activations": 8, "bits_weights": 3, "overrides": OVERRIDES},
}


def _schedule(kind):
    return {"quantizers": {"q": QUANTIZERS[kind]},
            "lr_schedulers": {"lr": {"class": "StepLR", "step_size": 1, "gamma": 0.8}},
            "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 4, "frequency": 1},
                         {"lr_scheduler": {"instance_name": "lr"}, "starting_epoch": 0, "ending_epoch": 4}]}


def _model_and_optimizer(model_cls, seed):
    torch.manual_seed(seed)
    model = model_cls()
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def _batches():
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator))
            for _ in range(2)]


@pytest.mark.parametrize("pass_optimizer", [False, True])
@pytest.mark.parametrize("kind", list(QUANTIZERS))
def test_resumed_qat_run_equals_uninterrupted_run(kind, pass_optimizer, relu_cnn, tmp_path):
    model_cls, batches = type(relu_cnn), _batches()
    model, optimizer = _model_and_optimizer(model_cls, 0)
    scheduler = distiller.config.dict_config(model, optimizer, _schedule(kind))
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=4)

    first, first_opt = _model_and_optimizer(model_cls, 0)
    first_sched = distiller.config.dict_config(first, first_opt, _schedule(kind))
    train_with_scheduler(first, first_opt, first_sched, batches, epochs=2)
    path = save_checkpoint(1, "relu_cnn", first, first_opt, first_sched, dir=str(tmp_path))
    assert torch.load(path, weights_only=True)["compression_sched"]["model_transforms"] == first_sched.model_transforms

    fresh, fresh_opt = _model_and_optimizer(model_cls, 123)  # everything must come from the checkpoint
    fresh, loaded_sched, loaded_opt, start_epoch = load_checkpoint(fresh, path,
                                                                   optimizer=fresh_opt if pass_optimizer else None)
    structure = [(name, type(module)) for name, module in fresh.named_modules()]
    resumed_sched = distiller.config.dict_config(fresh, loaded_opt, _schedule(kind), loaded_sched, start_epoch - 1)
    assert [(name, type(module)) for name, module in fresh.named_modules()] == structure  # not quantized twice
    assert len(resumed_sched.model_transforms) == 1
    train_with_scheduler(fresh, loaded_opt, resumed_sched, batches, epochs=2, start_epoch=start_epoch)

    expected, actual = model.state_dict(), fresh.state_dict()
    assert list(expected) == list(actual)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert [len(g["params"]) for g in loaded_opt.param_groups] == [len(g["params"]) for g in optimizer.param_groups]
