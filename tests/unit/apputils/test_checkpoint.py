"""Checkpoints: weights-only loading, atomic writes, DataParallel names, exact resume."""
import os

import pytest
import torch

import distiller
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.errors import CheckpointError
from distiller.testing import TinyCNN, train_with_scheduler

SCHEDULE = {
    "pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.7,
                        "weights": ["conv1.weight", "conv2.weight", "fc.weight"]}},
    "lr_schedulers": {"lr": {"class": "StepLR", "step_size": 1, "gamma": 0.7}},
    "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 4},
                 {"lr_scheduler": {"instance_name": "lr"}, "starting_epoch": 0, "ending_epoch": 6}],
}


def _setup(seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return model, optimizer


def test_resumed_run_is_bit_identical_to_uninterrupted_run(tmp_path, batches):
    model, optimizer = _setup()
    scheduler = distiller.config.dict_config(model, optimizer, SCHEDULE)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=6)

    first, first_opt = _setup()
    first_sched = distiller.config.dict_config(first, first_opt, SCHEDULE)
    train_with_scheduler(first, first_opt, first_sched, batches, epochs=3)
    path = save_checkpoint(2, "tiny", first, first_opt, first_sched, dir=str(tmp_path))

    fresh, _ = _setup(seed=123)  # different init: everything must come from the checkpoint
    fresh, loaded_sched, loaded_opt, start_epoch = load_checkpoint(fresh, path)
    assert start_epoch == 3 and isinstance(loaded_opt, torch.optim.SGD)
    resumed_sched = distiller.config.dict_config(fresh, loaded_opt, SCHEDULE, loaded_sched, start_epoch - 1)
    train_with_scheduler(fresh, loaded_opt, resumed_sched, batches, epochs=3, start_epoch=start_epoch)

    for (name, expected), actual in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(expected, actual), name
    assert loaded_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_checkpoint_loads_weights_only_and_holds_everything(tmp_path, batches):
    model, optimizer = _setup()
    scheduler = distiller.config.dict_config(model, optimizer, SCHEDULE)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
    save_checkpoint(0, "tiny", model, optimizer, scheduler, extras={"best_top1": 12.5}, is_best=True,
                    name="run", dir=str(tmp_path))
    for file in ("run_checkpoint.pth.tar", "run_best.pth.tar"):
        checkpoint = torch.load(tmp_path / file, weights_only=True)
        assert checkpoint["arch"] == "tiny" and checkpoint["epoch"] == 0
        assert checkpoint["extras"] == {"best_top1": 12.5}
        assert set(checkpoint["compression_sched"]["masks_dict"]) == {n for n, _ in model.named_parameters()}
        assert {name: p["class"] for name, p in checkpoint["compression_sched"]["policies"].items()} == \
            {"agp": "PruningPolicy", "lr": "LRPolicy"}
        assert checkpoint["optimizer_type"] == "SGD"
    assert sorted(os.listdir(tmp_path)) == ["run_best.pth.tar", "run_checkpoint.pth.tar"]


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    model, optimizer = _setup()
    path = save_checkpoint(0, "tiny", model, optimizer, dir=str(tmp_path))
    original = path and open(path, "rb").read()

    def dies_midway(obj, file):
        with open(file, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(1, "tiny", model, optimizer, dir=str(tmp_path))
    assert open(path, "rb").read() == original
    assert os.listdir(tmp_path) == ["checkpoint.pth.tar"]


def test_non_plain_extras_are_rejected_before_writing(tmp_path):
    model, _ = _setup()
    with pytest.raises(TypeError, match=r"checkpoint\['extras'\]\['fn'\]"):
        save_checkpoint(0, "tiny", model, extras={"fn": object()}, dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_dataparallel_prefixes_are_normalised_both_ways(tmp_path):
    model, _ = _setup()
    parallel = torch.nn.DataParallel(TinyCNN())
    parallel.module.load_state_dict(model.state_dict())
    path = save_checkpoint(0, "tiny", parallel, dir=str(tmp_path))
    assert not any(k.startswith("module.") for k in torch.load(path, weights_only=True)["state_dict"])
    plain = load_checkpoint(TinyCNN(), path)[0]
    assert torch.equal(plain.conv1.weight, model.conv1.weight)
    path = save_checkpoint(0, "tiny", model, dir=str(tmp_path))
    wrapped = load_checkpoint(torch.nn.DataParallel(TinyCNN()), path)[0]
    assert torch.equal(wrapped.module.conv1.weight, model.conv1.weight)


def test_bad_checkpoint_files_give_clear_errors(tmp_path):
    model, _ = _setup()
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_checkpoint(model, str(tmp_path / "missing.pth.tar"))
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a readable distiller checkpoint") as info:
        load_checkpoint(model, str(corrupt))
    assert "weights_only" not in str(info.value)  # never advise the unsafe loader
    foreign = tmp_path / "foreign.pth.tar"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="no 'state_dict'"):
        load_checkpoint(model, str(foreign))
    path = save_checkpoint(0, "tiny", model, dir=str(tmp_path))
    with pytest.raises(ValueError, match="holds a 'tiny' model but the requested architecture is 'resnet20_cifar'"):
        load_checkpoint(model, path, expected_arch="resnet20_cifar")
    with pytest.raises(CheckpointError, match=r"\(a 'tiny' checkpoint\) does not fit the given TinyCNN model: it "
                       r"has 11 entries of another shape \['conv1.weight': 8x3x3x3 in the checkpoint, 4x3x3x3 in"):
        load_checkpoint(TinyCNN(width=4), path)


def test_lean_checkpoint_loads_weights_only(tmp_path, batches):
    model, optimizer = _setup()
    scheduler = distiller.config.dict_config(model, optimizer, SCHEDULE)
    path = save_checkpoint(4, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    loaded, sched, opt, epoch = load_checkpoint(TinyCNN(), path, lean_checkpoint=True)
    assert (sched, opt, epoch) == (None, None, 0)
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_thinned_checkpoint_loads_into_fresh_model_also_lean(tmp_path, batches):
    model, optimizer = _setup()
    scheduler = distiller.CompressionScheduler(model)
    mask = torch.ones_like(model.conv1.weight)
    mask[:3] = 0
    scheduler.zeros_mask_dict["conv1.weight"].mask = mask
    scheduler.mask_all_weights()
    distiller.thinning.remove_filters(model, scheduler.zeros_mask_dict, optimizer=optimizer,
                                      dummy_input=batches[0][0], scheduler=scheduler)
    assert model.conv1.out_channels == 5
    path = save_checkpoint(0, "tiny", model, optimizer, scheduler, dir=str(tmp_path))
    for lean in (False, True):
        fresh, loaded_sched, _, _ = load_checkpoint(TinyCNN(), path, lean_checkpoint=lean)
        assert fresh.conv1.out_channels == 5 and fresh.conv2.in_channels == 5
        assert torch.equal(fresh(batches[0][0]), model(batches[0][0]))
        assert loaded_sched.model_transforms == scheduler.model_transforms
