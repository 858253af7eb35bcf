"""GPU fast paths of issue 14, each against its dense / plain baseline, interleaved in one process.

Sections (``--sections``, all by default):

* ``scheduler``: training-step time of torchvision ResNet-50 (ImageNet shapes, bf16 autocast, SGD with
  momentum) plain vs with a CompressionScheduler running AGP on every conv/linear weight (masks at the final
  sparsity, re-applied after every step) vs ``torch.nn.utils.prune``, reusing
  ``bench_scheduler_overhead``'s variants; target ``distiller_agp / plain <= 1.02``. Also the masks' memory
  against the weights (:func:`distiller.masking.mask_memory_report`).
* ``thinning``: ResNet-50 with 50% of every dependency group's filters removed
  (:func:`distiller.thinning.prune_and_thin`, ``fc`` kept) vs dense, inference throughput at batch 64 in
  fp32 and batch 256 in bf16 (:func:`distiller.benchmark.compare`).
* ``sparse24``: a 2:4-sparse fp16 Linear (16384x16384 by default, and 4096x4096) dense vs
  ``torch.sparse.to_sparse_semi_structured`` (:func:`distiller.pruning.to_semi_structured`, which would
  convert only where sparse wins); reference hardware gave about 1.27x at 16384 and < 1x at 4096.
* ``fp8``: an 8192x8192x8192 matrix product in FP8 (e4m3, ``torch._scaled_mm``, per-tensor scales, bf16
  output) vs bf16 ``torch.mm``; reference hardware gave about 1.7x. Needs compute capability >= 8.9.
* ``fast_linear`` (issue 16): bf16 transformer Linear layers (4096x4096, 8192x8192, 4096x16384) at 4096 and 16
  tokens through :func:`distiller.quantization.export.accelerate_linears` (``bench_fast_linear.py``): FP8 per
  tensor / per row and torchao int8 weight-only, each vs the dense layer, eager and compiled, with the per-layer
  decision. FP8 needs compute capability >= 8.9 (the report says so otherwise).

Prints one JSON object per measurement. Without CUDA it prints one line saying so and exits with status 0.

Example::

    python benchmarks/bench_gpu.py --repeats 20
"""
import argparse
import copy
import json
import os
import platform
import statistics

import torch

import bench_fast_linear
from bench_scheduler_overhead import build_variants, prunable_weights, time_interleaved
from distiller.benchmark import compare, interleaved_latencies_ms
from distiller.masking import mask_memory_report
from distiller.models import create_model
from distiller.pruning import nm_mask, to_semi_structured
from distiller.thinning import prune_and_thin

SECTIONS = ("scheduler", "thinning", "sparse24", "fp8", "fast_linear")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--train-batch", type=int, default=64, help="scheduler section: training batch size")
    parser.add_argument("--steps", type=int, default=10, help="scheduler section: timed steps per run")
    parser.add_argument("--sparse-sizes", type=int, nargs="+", default=[16384, 4096],
                        help="sparse24 section: square Linear sizes (tokens = size)")
    parser.add_argument("--fp8-size", type=int, default=8192)
    parser.add_argument("--fast-linear-shapes", nargs="+", default=list(bench_fast_linear.TRANSFORMER_SHAPES),
                        help="fast_linear section: in_features x out_features")
    parser.add_argument("--fast-linear-tokens", type=int, nargs="+", default=[4096, 16])
    parser.add_argument("--fast-linear-compiled", action=argparse.BooleanOptionalAction, default=True,
                        help="fast_linear section: also time the layers under torch.compile")
    return parser


def emit(section, **fields):
    print(json.dumps({"bench": "gpu", "section": section, **fields}), flush=True)


def machine(device):
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "capability": f"{major}.{minor}", "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def scheduler_section(args, device):
    torch.manual_seed(0)
    base = create_model(False, "imagenet", "resnet50", parallel=False).to(device, memory_format=torch.channels_last)
    inputs = torch.randn(args.train_batch, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.train_batch,), device=device)
    variants, agp_mask_ms = build_variants(base, device, final_sparsity=0.8)
    for variant in variants:
        variant.amp_dtype = torch.bfloat16
    time_interleaved(variants, inputs, labels, args, device)
    medians = {v.name: statistics.median(v.times_ms) for v in variants}
    memory = mask_memory_report(variants[1].scheduler)
    emit("scheduler", model="resnet50", batch=args.train_batch, amp="bf16", pruned_layers=len(prunable_weights(base)),
         median_step_ms=medians, ratio_distiller_agp_vs_plain=round(medians["distiller_agp"] / medians["plain"], 4),
         ratio_torch_prune_vs_plain=round(medians["torch_prune"] / medians["plain"], 4), target_ratio=1.02,
         scheduler_callbacks_ms_per_step=round(statistics.median(variants[1].callback_ms), 3),
         agp_mask_update_ms=round(agp_mask_ms, 3), mask_memory=memory.as_dict())


def thinning_section(args, device):
    torch.manual_seed(0)
    dense = create_model(False, "imagenet", "resnet50", parallel=False).to(device).eval()
    thinned = copy.deepcopy(dense)
    _, report = prune_and_thin(thinned, torch.randn(1, 3, 224, 224, device=device), 0.5, exclude=["fc"])
    example = torch.randn(1, 3, 224, 224, device=device)
    for dtype, batch in ((torch.float32, 64), (torch.bfloat16, 256)):
        table = compare(dense, thinned, example, device=device, dtype=dtype, batch_sizes=(batch,),
                        warmup=args.warmup, repeats=args.repeats)
        emit("thinning", model="resnet50", removed_fraction=0.5, dtype=str(dtype), batch=batch,
             rows=table.round(4).to_dict(orient="records"))


def sparse24_section(args, device):
    for size in args.sparse_sizes:
        torch.manual_seed(0)
        layer = torch.nn.Linear(size, size, bias=False, device=device, dtype=torch.float16)
        with torch.no_grad():
            layer.weight.mul_(nm_mask(layer.weight, 2, 4))
        model = torch.nn.Sequential(layer)
        x = torch.randn(size, size, device=device, dtype=torch.float16)
        report = to_semi_structured(model, x, min_speedup=0.0, warmup=args.warmup, repeats=args.repeats)
        emit("sparse24", shape=[size, size], tokens=size, dtype="float16",
             **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in report.iloc[0].to_dict().items()})


def fp8_section(args, device):
    if torch.cuda.get_device_capability(device) < (8, 9):
        emit("fp8", skipped="FP8 matrix products need compute capability >= 8.9")
        return
    size = args.fp8_size
    torch.manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    fp8_max = torch.finfo(torch.float8_e4m3fn).max
    scale_a, scale_b = a.abs().amax().float() / fp8_max, b.abs().amax().float() / fp8_max
    a8 = (a / scale_a).to(torch.float8_e4m3fn)
    b8 = (b / scale_b).to(torch.float8_e4m3fn).t().contiguous().t()    # column-major, as _scaled_mm requires
    calls = {"bf16": lambda: torch.mm(a, b),
             "fp8": lambda: torch._scaled_mm(a8, b8, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)}
    times = interleaved_latencies_ms(calls, device, args.warmup, args.repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    error = ((calls["fp8"]().float() - calls["bf16"]().float()).norm() / calls["bf16"]().float().norm()).item()
    emit("fp8", shape=[size, size, size], median_ms={k: round(v, 4) for k, v in medians.items()},
         speedup_fp8_vs_bf16=round(medians["bf16"] / medians["fp8"], 4), relative_error=round(error, 5))


def fast_linear_section(args, device):
    options = ["--device", str(device), "--dtype", "bfloat16", "--shapes", *args.fast_linear_shapes, "--tokens",
               *map(str, args.fast_linear_tokens), "--warmup", str(args.warmup), "--rounds", str(args.repeats)]
    layer_args = bench_fast_linear.get_args_parser().parse_args(
        options + (["--compiled"] if args.fast_linear_compiled else []))
    bench_fast_linear.layer_reports(layer_args, device, lambda **fields: emit("fast_linear", **fields))


def main(args):
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu", "skipped": "no CUDA device: nothing measured"}))
        return 0
    device = torch.device("cuda")
    emit("machine", **machine(device))
    runners = {"scheduler": scheduler_section, "thinning": thinning_section, "sparse24": sparse24_section,
               "fp8": fp8_section, "fast_linear": fast_linear_section}
    for section in args.sections:
        runners[section](args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
