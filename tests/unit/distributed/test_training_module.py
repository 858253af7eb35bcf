"""The training module (autocast, channels-last, torch.compile; DDP is exercised by the gloo tests), loss
scaling in the training loop, and the checks of a torchrun launch that need no process group."""
import argparse

import pytest
import torch

from distiller import CompressionScheduler
from distiller.apputils import classifier_distributed
from distiller.apputils.classifier_loop import train_one_epoch
from distiller.apputils.distributed import ProcessGroupInfo
from distiller.apputils.training_module import AutocastForward, TrainingModule
from distiller.errors import ArgumentError
from distiller.policy import ScheduledTrainingPolicy
from distiller.testing import TinyCNN
from distiller.thinning import remove_filters


def test_autocast_forward_runs_bf16_on_channels_last_inputs_and_returns_float32():
    model = TinyCNN().eval()
    seen = {}
    model.conv1.register_forward_pre_hook(
        lambda m, args: seen.update(channels_last=args[0].is_contiguous(memory_format=torch.channels_last)))
    model.conv1.register_forward_hook(lambda m, args, out: seen.update(dtype=out.dtype))
    output = AutocastForward(model, torch.bfloat16, channels_last=True)(torch.randn(2, 3, 8, 8))
    assert seen == {"channels_last": True, "dtype": torch.bfloat16}
    assert output.dtype == torch.float32


@pytest.mark.slow
def test_compiled_module_sees_masks_and_is_rebuilt_after_thinning():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    training = TrainingModule(model, channels_last=True, compile=True, compile_backend="aot_eager")
    inputs = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(training()(inputs), model(inputs))
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)

    scheduler = CompressionScheduler(model)
    mask = torch.ones_like(model.conv1.weight)
    mask[:3] = 0
    scheduler.zeros_mask_dict["conv1.weight"].mask = mask
    scheduler.mask_all_weights()  # in place: the same compiled module must compute with the masked weights
    first = training()
    torch.testing.assert_close(first(inputs), model(inputs))
    assert training.builds == 1

    remove_filters(model, scheduler.zeros_mask_dict, dummy_input=inputs[:1], scheduler=scheduler)
    assert model.conv1.weight.shape[0] == 5
    rebuilt = training()
    assert rebuilt is not first and training.builds == 2
    torch.testing.assert_close(rebuilt(inputs), model(inputs))
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # thinned weights converted again


class _GradientRecorder(ScheduledTrainingPolicy):
    def __init__(self):
        super().__init__()
        self.gradients = []

    def before_parameter_optimization(self, model, epoch, minibatch_id, minibatches_per_epoch, zeros_mask_dict,
                                      meta, optimizer):
        self.gradients.append(model.fc.weight.grad.clone())


def _recorded_step(scaler):
    torch.manual_seed(0)
    model = TinyCNN()
    recorder = _GradientRecorder()
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(recorder, epochs=[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))]
    train_one_epoch(model, torch.nn.CrossEntropyLoss(), optimizer, batch, 0, scheduler, scaler=scaler)
    return recorder.gradients[0], model.fc.weight.detach()


def test_policies_see_unscaled_gradients_and_the_step_uses_them():
    scaled_grad, scaled_weight = _recorded_step(torch.amp.GradScaler("cpu", init_scale=1024.0))
    plain_grad, plain_weight = _recorded_step(None)
    torch.testing.assert_close(scaled_grad, plain_grad)
    torch.testing.assert_close(scaled_weight, plain_weight)


def _torchrun_args(**overrides):
    args = argparse.Namespace(cpu=True, gpus=None, batch_size=32, load_serialized=False, quantize_eval=False)
    return argparse.Namespace(**{**vars(args), **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 33}, "-b 33 is the global mini-batch and must be a multiple of the 2 processes; pass e.g. -b 32"),
    ({"gpus": [0, 1]}, "--gpus 0,1: under torchrun"),
    ({"quantize_eval": True, "qe_lapq": True}, "--qe-lapq runs in one process"),
    ({"export_onnx": ""}, "--export-onnx runs in one process"),
    ({"summary": ["compute"]}, "--summary runs in one process"),
    ({"sensitivity": "filter"}, "--sense runs in one process"),
])
def test_torchrun_launch_refuses_what_cannot_run_distributed(monkeypatch, overrides, message):
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: ProcessGroupInfo(0, 2, 0, "gloo"))
    with pytest.raises(ArgumentError, match=message.replace(".", r"\.")):
        classifier_distributed.join_process_group(_torchrun_args(**overrides))


@pytest.mark.parametrize("overrides", [{"quantize_eval": True}, {"activation_stats": ["train", "test"]},
                                       {"quantize_eval": True, "qe_compile": True, "qe_export_onnx": True}])
def test_torchrun_launch_accepts_what_combines_over_the_processes(monkeypatch, overrides):
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: ProcessGroupInfo(0, 2, 0, "gloo"))
    assert classifier_distributed.join_process_group(_torchrun_args(**overrides)) is not None


def test_torchrun_launch_drops_data_parallel(monkeypatch):
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: ProcessGroupInfo(0, 2, 0, "gloo"))
    args = _torchrun_args()
    assert classifier_distributed.join_process_group(args) == ProcessGroupInfo(0, 2, 0, "gloo")
    assert args.load_serialized and args.gpus is None
    monkeypatch.setattr(classifier_distributed, "init_from_env", lambda use_cuda: None)  # not under torchrun
    args = _torchrun_args(batch_size=33)
    assert classifier_distributed.join_process_group(args) is None and args == _torchrun_args(batch_size=33)
