"""Training-step overhead of pruning masks: plain loop vs CompressionScheduler (AGP) vs torch.nn.utils.prune.

Three copies of resnet20_cifar (same initial weights) train on the same fixed 32x32 batch with SGD +
momentum:

* ``plain``: no pruning;
* ``distiller_agp``: a CompressionScheduler built from a YAML-style schedule runs AutomatedGradualPruner
  on every conv/linear weight (masks at the final sparsity), the four per-step callbacks are called
  and masks are re-applied after every optimizer step;
* ``torch_prune``: ``torch.nn.utils.prune.l1_unstructured`` on every conv/linear weight at the same
  per-layer sparsity (the weight is recomputed as ``weight_orig * weight_mask`` in a forward pre-hook).

Runs are interleaved (plain, distiller_agp, torch_prune, plain, ...); each run times ``--steps``
training steps after a warm-up. Prints one JSON object per variant (median step time) and a summary line
with the ratios to ``plain``, the host time spent inside the scheduler's callbacks per step (a direct
overhead measure that stays readable when a busy machine makes whole-step ratios noisy), the time of one
AGP mask update (once per pruning epoch), the memory of the masks against the weights they mask
(:func:`distiller.masking.mask_memory_report`: bool masks, and what bit-packing them would take) and the
machine, including its load average.

Example::

    python benchmarks/bench_scheduler_overhead.py --batch-size 128 --steps 20 --repeats 5 --device cpu
"""
import argparse
import copy
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.utils.prune as torch_prune

import distiller
from distiller.masking import mask_memory_report
from distiller.metrics import sparsity
from distiller.models import create_model


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before timing")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--sparsity", type=float, default=0.8, help="final per-layer sparsity")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser


def prunable_weights(model):
    return [name for name, param in model.named_parameters() if param.dim() in (2, 4)]


def agp_schedule(weights, final_sparsity):
    """Two AGP pruning epochs: 0 -> half the final sparsity, 1 -> final sparsity."""
    return {
        "version": 1,
        "pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": final_sparsity / 2,
                            "final_sparsity": final_sparsity, "weights": weights}},
        "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 2,
                      "frequency": 1}],
    }


class Variant:
    """One model + optimizer (+ pruning) that can run timed training steps (the forward pass under
    ``torch.autocast`` when ``amp_dtype`` is given)."""

    def __init__(self, name, model, scheduler=None, epoch=0, amp_dtype=None):
        self.name, self.model, self.scheduler, self.epoch, self.amp_dtype = name, model, scheduler, epoch, amp_dtype
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        self.step_id = 0
        self.callback_seconds = 0.0  # host time spent inside the scheduler's callbacks
        self.times_ms = []
        self.callback_ms = []

    def _callback(self, method, *args):
        start = time.perf_counter()
        result = method(*args)
        self.callback_seconds += time.perf_counter() - start
        return result

    def step(self, inputs, labels, steps_per_epoch):
        sched, epoch, step = self.scheduler, self.epoch, self.step_id % steps_per_epoch
        if sched:
            self._callback(sched.on_minibatch_begin, epoch, step, steps_per_epoch, self.optimizer)
        with torch.autocast(inputs.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss = torch.nn.functional.cross_entropy(self.model(inputs), labels)
        if sched:
            loss = self._callback(sched.before_backward_pass, epoch, step, steps_per_epoch, loss, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sched:
            self._callback(sched.before_parameter_optimization, epoch, step, steps_per_epoch, self.optimizer)
        self.optimizer.step()
        if sched:
            self._callback(sched.on_minibatch_end, epoch, step, steps_per_epoch, self.optimizer)
        self.step_id += 1

    def run(self, inputs, labels, steps, device):
        """Times ``steps`` training steps; records the mean step time and the callbacks' share (ms)."""
        synchronize(device)
        self.callback_seconds = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            self.step(inputs, labels, steps)
        synchronize(device)
        self.times_ms.append((time.perf_counter() - start) * 1000.0 / steps)
        self.callback_ms.append(self.callback_seconds * 1000.0 / steps)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_variants(base, device, final_sparsity):
    weights = prunable_weights(base)
    plain = Variant("plain", copy.deepcopy(base))

    agp_model = copy.deepcopy(base)
    optimizer_for_config = torch.optim.SGD(agp_model.parameters(), lr=0.05)
    scheduler = distiller.config.dict_config(agp_model, optimizer_for_config, agp_schedule(weights, final_sparsity))
    start = time.perf_counter()
    scheduler.on_epoch_begin(0)
    scheduler.on_epoch_begin(1)   # masks at the final sparsity; timed steps run inside epoch 1
    synchronize(device)
    agp_mask_ms = (time.perf_counter() - start) * 1000.0 / 2
    agp = Variant("distiller_agp", agp_model, scheduler, epoch=1)

    peer_model = copy.deepcopy(base)
    modules = dict(peer_model.named_modules())
    for name in weights:
        torch_prune.l1_unstructured(modules[name.rsplit(".", 1)[0]], "weight", amount=final_sparsity)
    peer = Variant("torch_prune", peer_model)
    return [plain, agp, peer], agp_mask_ms


def weight_sparsity(model, names):
    """Mean per-layer sparsity of the effective weights (``weight`` attributes, masked for torch prune)."""
    modules = dict(model.named_modules())
    return statistics.fmean(sparsity(modules[n.rsplit(".", 1)[0]].weight) for n in names)


def machine_info(device, args):
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor()
            or platform.machine(), "threads": torch.get_num_threads(), "device": str(device),
            "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
            "load_avg_1m": round(os.getloadavg()[0], 2)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def time_interleaved(variants, inputs, labels, args, device):
    """Warms every variant up (``args.warmup`` rounds), then times ``args.repeats`` rounds of ``args.steps``
    steps, one variant after the other in each round (interleaved)."""
    for variant in variants:
        variant.model.train()
        for _ in range(args.warmup):
            variant.step(inputs, labels, args.steps)
    for _ in range(args.repeats):
        for variant in variants:
            variant.run(inputs, labels, args.steps, device)

def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = create_model(False, "cifar10", "resnet20_cifar", parallel=False).to(device)
    inputs = torch.randn(args.batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    variants, agp_mask_ms = build_variants(base, device, args.sparsity)
    time_interleaved(variants, inputs, labels, args, device)

    info = machine_info(device, args)
    weights = prunable_weights(base)
    medians = {}
    for variant in variants:
        medians[variant.name] = statistics.median(variant.times_ms)
        print(json.dumps({"bench": "scheduler_overhead", "variant": variant.name,
                          "median_step_ms": round(medians[variant.name], 3),
                          "step_ms": [round(t, 3) for t in variant.times_ms],
                          "mean_layer_sparsity": round(weight_sparsity(variant.model, weights), 4), **info}))
    callbacks_ms = statistics.median(variants[1].callback_ms)
    memory = mask_memory_report(variants[1].scheduler)
    print(json.dumps({"bench": "scheduler_overhead", "summary": True,
                      "ratio_distiller_agp_vs_plain": round(medians["distiller_agp"] / medians["plain"], 4),
                      "scheduler_callbacks_ms_per_step": round(callbacks_ms, 3),
                      "callbacks_share_of_plain_step": round(callbacks_ms / medians["plain"], 5),
                      "ratio_torch_prune_vs_plain": round(medians["torch_prune"] / medians["plain"], 4),
                      "agp_mask_update_ms_per_epoch": round(agp_mask_ms, 3),
                      "mask_bytes": memory.mask_bytes, "masked_weight_bytes": memory.weight_bytes,
                      "mask_to_weight": round(memory.mask_to_weight, 4),
                      "mask_to_bf16_weight": round(memory.mask_to_bf16_weight, 4),
                      "packed_mask_to_bf16_weight": round(memory.packed_to_bf16_weight, 4),
                      "pruned_layers": len(weights), **info}))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
