"""The classifier engine under DistributedDataParallel: two gloo processes (as ``torchrun --nproc_per_node=2``
starts them) run AGP filter pruning and thinning on digits like one process with the same global batch."""
import glob
import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest
import torch

from distiller.apputils import data_loaders, load_checkpoint
from distiller.models import create_model
from distiller.testing.distributed import run_in_gloo_processes

sys.path.insert(0, os.path.dirname(__file__))  # spawned processes import the worker by module name
import ddp_app_worker  # noqa: E402

SCHEDULE = textwrap.dedent("""\
    version: 1
    pruners:
      filters:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.25
        final_sparsity: 0.5
        group_type: Filters
        weights: [conv1.weight, conv2.weight]
    extensions:
      thinner:
        class: FilterRemover
    policies:
      - pruner: {instance_name: filters}
        starting_epoch: 0
        ending_epoch: 2
        frequency: 1
      - extension: {instance_name: thinner}
        epochs: [1]
    """)


QAT_SCHEDULE = textwrap.dedent("""\
    version: 1
    pruners:
      filters:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.25
        final_sparsity: 0.5
        group_type: Filters
        weights: [conv1.weight, conv2.weight]
    quantizers:
      qat:
        class: QuantAwareTrainRangeLinearQuantizer
        bits_activations: 8
        bits_weights: 8
        mode: ASYMMETRIC_UNSIGNED
        ema_decay: 0.9
    policies:
      - quantizer: {instance_name: qat}
        starting_epoch: 0
        ending_epoch: 2
        frequency: 1
      - pruner: {instance_name: filters}
        starting_epoch: 0
        ending_epoch: 2
        frequency: 1
    """)


def _schedule(tmp_path):
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(SCHEDULE)
    return schedule


def _argv(tmp_path, out_dir):
    schedule = _schedule(tmp_path)
    # simplenet_cifar has no BatchNorm: per-process batch statistics would differ from the one-process run's
    # (SyncBatchNorm, which would share them, runs on GPUs only: --sync-bn). 258 training samples: an even split.
    return ["-a", "simplenet_cifar", "--epochs", "3", "-b", "32", "--lr", "0.05", "--det", "--etrs", "0.2",
            "-p", "100", "-j", "0", "-o", str(out_dir), "-n", "ddp", "--compress", str(schedule)]


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path, monkeypatch):
    run_in_gloo_processes(ddp_app_worker.train, 2, _argv(tmp_path, tmp_path / "ddp"), str(tmp_path / "rank{rank}.pt"))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    monkeypatch.setattr(data_loaders, "DIGITS_MAX_SHIFT", 0)
    ddp_app_worker.train(0, 1, _argv(tmp_path, tmp_path / "single"), str(tmp_path / "single.pt"))
    single = torch.load(tmp_path / "single.pt", weights_only=False)

    assert ranks[0]["train_batches"] == ranks[1]["train_batches"] == single["train_batches"] == 9
    for name, mask in ranks[0]["masks"].items():  # identical masks on both ranks, and the one-process run's
        for other in (ranks[1], single):
            assert (mask is None) == (other["masks"][name] is None), name
            assert mask is None or torch.equal(mask, other["masks"][name]), name
    shapes = {name: tuple(t.shape) for name, t in ranks[0]["state"].items()}
    assert shapes["conv1.weight"] == (3, 3, 5, 5) and shapes["conv2.weight"] == (8, 3, 5, 5)  # thinned
    for other in (ranks[1], single):
        assert {name: tuple(t.shape) for name, t in other["state"].items()} == shapes
    for name, weights in ranks[0]["state"].items():
        assert torch.equal(weights, ranks[1]["state"][name]), name
        # The gradients are averaged in another order than one process sums them: equal up to rounding.
        torch.testing.assert_close(weights, single["state"][name], rtol=1e-5, atol=1e-6, msg=name)

    run_dirs = glob.glob(str(tmp_path / "ddp" / "*"))
    assert len(run_dirs) == 1 and run_dirs[0] == ranks[0]["logdir"] == ranks[1]["logdir"]
    written = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dirs[0], "*.pth.tar")))
    assert written == sorted(os.path.basename(p) for p in glob.glob(os.path.join(single["logdir"], "*.pth.tar")))
    assert "checkpoint.pth.tar" in written
    checkpoint = torch.load(os.path.join(run_dirs[0], "checkpoint.pth.tar"), weights_only=True)
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])


@pytest.mark.slow
def test_quantization_aware_training_ranges_are_identical_on_both_ranks(tmp_path):
    schedule = tmp_path / "qat.yaml"
    schedule.write_text(QAT_SCHEDULE)
    argv = _argv(tmp_path, tmp_path / "ddp")
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--compress") + 1] = str(schedule)
    run_in_gloo_processes(ddp_app_worker.train, 2, argv, str(tmp_path / "rank{rank}.pt"))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)["state"] for rank in range(2)]
    ranges = [name for name in ranks[0] if name.endswith(("tracked_min_biased", "tracked_max_biased", "scale"))]
    assert ranges, sorted(ranks[0])
    assert any(ranks[0][name].abs().sum() > 0 for name in ranges)  # the ranges were tracked
    for name, value in ranks[0].items():  # weights, float copies, quantized weights and the ranges
        assert torch.equal(value, ranks[1][name]), name


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, run_classifier):
    argv = _argv(tmp_path, tmp_path / "ddp")
    run_in_gloo_processes(ddp_app_worker.train, 2, argv, str(tmp_path / "rank{rank}.pt"))
    checkpoint = os.path.join(torch.load(tmp_path / "rank0.pt", weights_only=False)["logdir"], "checkpoint.pth.tar")
    resumed = run_classifier(*argv[:argv.index("--epochs")], "--epochs", "4", "-b", "32", "--det", "--etrs", "0.2",
                             "-j", "0", "-o", tmp_path / "resumed", "--resume-from", checkpoint)
    assert resumed.status == 0, resumed.stderr
    assert resumed.summary["epochs"] == 4 and resumed.summary["params_total"] < 62006


def test_sync_bn_without_torchrun_is_refused_before_the_run_starts(run_classifier, tmp_path):
    result = run_classifier("-a", "resnet20_cifar", "--epochs", "1", "--sync-bn", "-o", tmp_path)
    assert result.status == 2 and result.run_dir is None
    assert "--sync-bn synchronises BatchNorm statistics between the processes of a torchrun launch" in result.stderr


@pytest.mark.cuda
@pytest.mark.slow
def test_sync_bn_trains_on_gpus_as_one_process_and_saves_plain_batchnorm(tmp_path, monkeypatch):
    """One process per GPU (two at most) with --sync-bn: the BatchNorm layers normalize by the statistics of the
    whole global batch, so two processes train resnet20 as one does; the checkpoint loads into the plain model."""
    world_size = min(2, torch.cuda.device_count())
    argv = ["-a", "resnet20_cifar", "--epochs", "1", "-b", "32", "--lr", "0.05", "--det", "--etrs", "0.2", "-p",
            "100", "-j", "0"]
    run_in_gloo_processes(ddp_app_worker.train, world_size, [*argv, "--sync-bn", "-o", str(tmp_path / "ddp")],
                          str(tmp_path / "rank{rank}.pt"))  # NCCL: the engine picks it where CUDA is available
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]
    for name, value in ranks[0]["state"].items():  # each rank's on its GPU
        assert torch.equal(value.cpu(), ranks[-1]["state"][name].cpu()), name
    plain = create_model(False, "digits", "resnet20_cifar", parallel=False, device_ids=-1)
    load_checkpoint(plain, os.path.join(ranks[0]["logdir"], "checkpoint.pth.tar"))
    assert type(plain.layer1[0].bn1) is torch.nn.BatchNorm2d
    for name, value in plain.state_dict().items():
        assert torch.equal(value, ranks[0]["state"][name].cpu()), name
    if world_size == 2:
        monkeypatch.setattr(data_loaders, "DIGITS_MAX_SHIFT", 0)
        ddp_app_worker.train(0, 1, [*argv, "-o", str(tmp_path / "single")], str(tmp_path / "single.pt"))
        single = torch.load(tmp_path / "single.pt", weights_only=False)["state"]
        for name, value in single.items():  # per-process batch statistics would differ far more
            torch.testing.assert_close(ranks[0]["state"][name].cpu(), value.cpu(), rtol=1e-3, atol=1e-3, msg=name)


def test_amp_fp16_needs_cuda(run_classifier, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 runs where CUDA is available")
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "1", "--cpu", "--amp", "fp16", "-o", tmp_path)
    assert result.status == 2 and result.run_dir is None
    assert "--amp fp16 needs a CUDA device" in result.stderr and "--amp bf16" in result.stderr


@pytest.mark.slow
def test_bf16_channels_last_training_on_the_cpu(run_classifier, tmp_path):
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "1", "-b", "64", "--lr", "0.1", "--etrs", "0.2",
                            "-p", "100", "--amp", "bf16", "--channels-last", "--compress", _schedule(tmp_path),
                            "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert result.summary["top1"] > 0 and result.summary["epochs"] == 1


@pytest.mark.cuda
@pytest.mark.slow
def test_gpu_fast_paths_survive_pruning_and_thinning(run_classifier, tmp_path):
    result = run_classifier("-a", "simplenet_cifar", "--epochs", "3", "-b", "64", "--lr", "0.05", "--etrs", "0.2",
                            "-p", "100", "--amp", "fp16", "--channels-last", "--compile", "--compress",
                            _schedule(tmp_path), "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert result.summary["params_total"] < 62006  # thinned at epoch 1, then trained (recompiled) at epoch 2


def _readme_torchrun_command():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = next(b for b in readme.split("```bash\n")[1:] if b.startswith("torchrun"))
    return shlex.split(block.split("```")[0].replace("\\\n", " "))


@pytest.mark.slow
def test_the_readme_torchrun_command_trains_on_two_cpu_processes(tmp_path):
    command = _readme_torchrun_command()
    assert "--nproc_per_node=2" in command
    # --standalone: a rendezvous on a free local port (tests may run side by side); 2 short epochs on 5% of digits.
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", *command[1:],
            "--epochs", "2", "--etrs", "0.05", "--etes", "0.05", "-o", str(tmp_path)]
    result = subprocess.run(argv, cwd=os.path.join(os.path.dirname(__file__), "..", ".."), capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = os.listdir(tmp_path)
    assert len(run_dirs) == 1, run_dirs
    with open(tmp_path / run_dirs[0] / "summary.json") as f:
        assert json.load(f)["epochs"] == 2
    assert result.stdout.count("Epoch 1/1") == 1  # rank 0 logs, rank 1 does not


@pytest.mark.slow
def test_a_two_node_launch_with_the_c10d_rendezvous_trains_like_one_node(tmp_path):
    """Two torchrun launchers (one per "node", as on two machines; here both on localhost) meet at the c10d
    rendezvous of docs-src/scale.md; the job runs with world size 2 and node 0's first process writes the run."""
    from distiller.testing.distributed import free_port
    command = _readme_torchrun_command()
    app_args = [arg for arg in command[1:] if not arg.startswith("--nproc_per_node")]
    rendezvous = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}",
                  "--rdzv_id=distiller_two_nodes"]
    argv = [sys.executable, "-m", "torch.distributed.run", *rendezvous, *app_args,
            "--epochs", "1", "--etrs", "0.05", "--etes", "0.05", "-o", str(tmp_path)]
    nodes = [subprocess.Popen(argv, cwd=os.path.join(os.path.dirname(__file__), "..", ".."), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-3000:] for _, err in outputs]
    (run_dir,) = os.listdir(tmp_path)
    with open(tmp_path / run_dir / "summary.json") as f:
        assert json.load(f)["epochs"] == 1
    assert sum("Epoch 0/0" in out for out, _ in outputs) == 1  # one process in the job logs
    assert sum("DistributedDataParallel: world size 2 (gloo)" in out for out, _ in outputs) == 1
