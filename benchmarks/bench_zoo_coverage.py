"""Coverage of the model zoo: structured pruning + thinning (``--task thin``), int8 lowering (``--task int8``).

For each of torchvision's classification models (random init, eval mode, one 224x224 input), remove 30% of
the channels of every dependency group, ranked by L1 norm, keeping the classifier's outputs:

* ``distiller``: ``distiller.thinning.prune_and_thin(model, x, 0.3, exclude=[classifier])``;
* ``torch_pruning``: ``tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
  pruning_ratio=0.3, ignored_layers=[classifier]).step()`` (when Torch-Pruning is installed).

The classifier is the last ``nn.Linear`` of the model (the last ``nn.Conv2d`` when it has none). A model
*works* when the call returns, the pruned model runs on the input and returns the same output shape. Both
tools run on fresh builds of the same weights, one after the other, alternating which goes first.

Each call runs in its own process, killed when it runs longer than ``--limit-seconds`` or grows past
``--limit-gb`` of resident memory (it then counts as failed: Torch-Pruning 1.6 grows past 15 GB on
``maxvit_t``). Prints one JSON
object per model and tool (time, parameters and MACs before and after, the error when it failed; for
distiller also the filters left whole by reason), then a summary line with the counts, the wall time and
the machine.

``--task int8`` covers the CIFAR models of our zoo (32x32, ``--zoo cifar10``) and torchvision's classification
models (224x224, ``--zoo torchvision``): each (``nn.MultiheadAttention`` converted by
``distiller.transformers.convert_attention``, which PTQ asks for) is quantized by ``PostTrainLinearQuantizer``
with its defaults (static ranges from two random calibration batches), lowered by ``to_pt2e`` (torch.fx walk, then
``torch.export``), compared on random inputs with the simulated model, and (unless ``--no-compile``) compiled
by ``compile_int8`` and compared again. A failure records the stage (quantize, lower, export, compile, parity)
and the error, which names the blocking layer or operation.

Example::

    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --task int8 --zoo cifar10
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --task int8 --zoo torchvision --no-compile
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --models vit_b_16 maxvit_t --tools distiller
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --from maxvit_t   # resume a run at a model
"""
import argparse
import json
import multiprocessing
import os
import platform
import time
import traceback

import torch
import torchvision
from torch import nn

from distiller.summaries import model_macs, model_params
from distiller.thinning import prune_and_thin


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: the whole zoo)")
    parser.add_argument("--from", dest="first", default=None, help="start at this model of the list")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--tools", nargs="*", default=["distiller", "torch_pruning"],
                        choices=["distiller", "torch_pruning"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--limit-seconds", type=float, default=900, help="stop a call running longer")
    parser.add_argument("--limit-gb", type=float, default=9, help="stop a call growing the process larger")
    parser.add_argument("--task", choices=["thin", "int8"], default="thin")
    parser.add_argument("--zoo", choices=["cifar10", "torchvision"], default="torchvision",
                        help="--task int8: the models (and their input resolution: 32 for cifar10)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="--task int8: lower and export only (compiling takes minutes per large model)")
    return parser


def machine():
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def resident_gb(pid):
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def classifier_of(model):
    """(name, module) of the last Linear layer, or of the last Conv2d when there is none."""
    for kind in (nn.Linear, nn.Conv2d):
        found = [(name, module) for name, module in model.named_modules() if isinstance(module, kind)]
        if found:
            return found[-1]
    raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer")


def build(name):
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def prune_with_distiller(model, x, fraction, classifier):
    _, report = prune_and_thin(model, x, fraction, exclude=[classifier])
    return {"blocked": report.blocked}


def prune_with_torch_pruning(model, x, fraction, classifier):
    import torch_pruning as tp
    tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=fraction,
                         ignored_layers=[model.get_submodule(classifier)]).step()
    return {}


TOOLS = {"distiller": prune_with_distiller, "torch_pruning": prune_with_torch_pruning}


def run_one(name, tool, x, fraction):
    model = build(name)
    classifier, _ = classifier_of(model)
    result = {"model": name, "tool": tool, "params_before": model_params(model)}
    with torch.no_grad():
        expected = model(x).shape
    result["macs_before"] = model_macs(model, x)
    start = time.perf_counter()
    try:
        result.update(TOOLS[tool](model, x, fraction, classifier))
        result["seconds"] = round(time.perf_counter() - start, 2)
        with torch.no_grad():
            shape = model(x).shape
        if shape != expected:
            raise RuntimeError(f"output shape {tuple(shape)} instead of {tuple(expected)}")
        result.update(ok=True, params_after=model_params(model), macs_after=model_macs(model, x))
    except Exception as err:  # noqa: BLE001 - the benchmark records every failure and goes on
        result.update(ok=False, seconds=round(time.perf_counter() - start, 2),
                      error=f"{type(err).__name__}: {err}"[:300],
                      where=traceback.extract_tb(err.__traceback__)[-1].filename.split("site-packages/")[-1])
    return result


class _FinalOutput(nn.Module):
    """The last output of a model that returns a list of exits (early-exit models), else the output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        output = self.model(x)
        return output[-1] if isinstance(output, (list, tuple)) else output


def lower_int8(name, zoo, x, compile_model):
    """Quantize (defaults), lower, export and optionally compile one model; the stage that failed if any."""
    from distiller.data_loggers import collect_quant_stats
    from distiller.models import create_model
    from distiller.quantization import PostTrainLinearQuantizer
    from distiller.quantization.export import compile_int8, parity_check, to_pt2e
    from distiller.quantization.export.pt2e import build_pt2e_model

    result, stage, start = {"model": name, "zoo": zoo}, "quantize", time.perf_counter()
    try:
        torch.manual_seed(0)
        model = (create_model(False, "cifar10", name, parallel=False) if zoo == "cifar10" else build(name)).eval()
        if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):  # as PTQ's error message asks
            from distiller.transformers import convert_attention
            convert_attention(model)
        calibration = [torch.randn_like(x) for _ in range(2)]
        stats = collect_quant_stats(model, lambda m: [m(b) for b in calibration])
        PostTrainLinearQuantizer(model, model_activation_stats=stats).prepare_model(x[:1])
        stage = "lower"
        lowered = build_pt2e_model(model)
        stage = "export"
        program = to_pt2e(model, x)
        stage = "parity"
        inputs = [torch.randn_like(x) for _ in range(2)]
        result["lowered_parity"] = parity_check(_FinalOutput(model), inputs, _FinalOutput(program.module()))
        result["int8_layers_lowered"] = sum(n.target is torch.ops.quantized_decomposed.dequantize_per_channel.default
                                            for n in lowered.graph.nodes)
        if compile_model:
            stage = "compile"
            compiled = compile_int8(model, x)
            result["fusion"] = f"{compiled.fusion}, {compiled.int8_layers} of {compiled.quantized_layers} layers int8"
            stage = "parity"
            result["compiled_parity"] = parity_check(_FinalOutput(model), inputs, _FinalOutput(compiled))
        result["ok"] = True
    except Exception as err:  # noqa: BLE001 - the benchmark records every failure and goes on
        result.update(ok=False, stage=stage, error=f"{type(err).__name__}: {err}"[:400],
                      where=traceback.extract_tb(err.__traceback__)[-1].filename.split("site-packages/")[-1])
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _child(connection, work, *work_args):
    connection.send(work(*work_args))
    connection.close()


def run_isolated(name, tool, x, args):
    """``run_one`` (or ``lower_int8`` for --task int8) in a forked process, killed past the time or
    resident-memory limit."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    work = (lower_int8, name, args.zoo, x, args.compile) if args.task == "int8" else (run_one, name, tool, x,
                                                                                      args.fraction)
    process = context.Process(target=_child, args=(sender, *work))
    start = time.perf_counter()
    process.start()
    stopped = None
    while process.is_alive() and not receiver.poll(0.5):
        if time.perf_counter() - start > args.limit_seconds:
            stopped = f"stopped after {args.limit_seconds:.0f} s"
        elif resident_gb(process.pid) > args.limit_gb:
            stopped = f"stopped at {args.limit_gb:.0f} GB of resident memory"
        if stopped:
            process.kill()
            break
    result = receiver.recv() if receiver.poll() else None
    process.join()
    if result is None:
        result = {"model": name, "tool": tool, "ok": False, "seconds": round(time.perf_counter() - start, 2),
                  "error": stopped or f"the process died (exit code {process.exitcode})"}
    return result


def main(args):
    torch.set_num_threads(args.threads)
    if args.task == "int8" and args.zoo == "cifar10":
        from distiller.models import list_models
        names, resolution = args.models or list_models("cifar10"), 32
    else:
        names, resolution = args.models or torchvision.models.list_models(module=torchvision.models), args.resolution
    if args.first is not None:
        names = names[names.index(args.first):]
    batch = 1 if args.task != "int8" else 16 if resolution <= 32 else 4  # int8: samples for the top-1 agreement
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    if args.task == "int8":
        args.tools = ["distiller_int8"]
    start, works = time.perf_counter(), {tool: [] for tool in args.tools}
    for index, name in enumerate(names):
        order = args.tools if index % 2 == 0 else list(reversed(args.tools))
        for tool in order:
            result = run_isolated(name, tool, x, args)
            print(json.dumps(result), flush=True)
            if result["ok"]:
                works[tool].append(name)
    summary = {"summary": "bench_zoo_coverage", "models": len(names),
               "works": {tool: len(ok) for tool, ok in works.items()},
               "failed": {tool: sorted(set(names) - set(ok)) for tool, ok in works.items()},
               "wall_s": round(time.perf_counter() - start, 1), "machine": machine(), "args": vars(args)}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
