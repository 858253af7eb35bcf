"""Coverage of the torchvision classification zoo: structured pruning + thinning of every model.

For each of torchvision's classification models (random init, eval mode, one 224x224 input), remove 30% of
the channels of every dependency group, ranked by L1 norm, keeping the classifier's outputs:

* ``distiller``: ``distiller.thinning.prune_and_thin(model, x, 0.3, exclude=[classifier])``;
* ``torch_pruning``: ``tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
  pruning_ratio=0.3, ignored_layers=[classifier]).step()`` (when Torch-Pruning is installed).

The classifier is the last ``nn.Linear`` of the model (the last ``nn.Conv2d`` when it has none). A model
*works* when the call returns, the pruned model runs on the input and returns the same output shape. Both
tools run on fresh builds of the same weights, one after the other, alternating which goes first.

A call that runs longer than ``--limit-seconds`` or grows the process past ``--limit-gb`` of resident memory
is interrupted and counts as failed (Torch-Pruning 1.6 grows past 13 GB on ``maxvit_t``). Prints one JSON
object per model and tool (time, parameters and MACs before and after, the error when it failed; for
distiller also the filters left whole by reason), then a summary line with the counts, the wall time and
the machine.

Example::

    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --models vit_b_16 maxvit_t --tools distiller
    OMP_NUM_THREADS=1 python benchmarks/bench_zoo_coverage.py --from maxvit_t   # resume a run at a model
"""
import _thread
import argparse
import gc
import json
import os
import platform
import threading
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
    parser.add_argument("--limit-seconds", type=float, default=900, help="interrupt a call running longer")
    parser.add_argument("--limit-gb", type=float, default=10, help="interrupt a call growing the process larger")
    return parser


def machine():
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def resident_gb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


class Watchdog:
    """Interrupts the main thread (KeyboardInterrupt) when the guarded block runs longer than ``seconds`` or
    the process grows past ``gigabytes`` of resident memory; ``reason`` then says which."""

    def __init__(self, seconds, gigabytes):
        self.seconds, self.gigabytes, self.reason = seconds, gigabytes, None
        self._done = threading.Event()

    def _watch(self):
        start = time.perf_counter()
        while not self._done.wait(0.5):
            if time.perf_counter() - start > self.seconds:
                self.reason = f"stopped after {self.seconds:.0f} s"
            elif resident_gb() > self.gigabytes:
                self.reason = f"stopped at {self.gigabytes:.0f} GB of resident memory"
            if self.reason:
                _thread.interrupt_main()
                return

    def __enter__(self):
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        return False


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


def run_one(name, tool, x, args):
    model = build(name)
    classifier, _ = classifier_of(model)
    result = {"model": name, "tool": tool, "params_before": model_params(model)}
    with torch.no_grad():
        expected = model(x).shape
    result["macs_before"] = model_macs(model, x)
    start = time.perf_counter()
    watchdog = Watchdog(args.limit_seconds, args.limit_gb)
    try:
        with watchdog:
            result.update(TOOLS[tool](model, x, args.fraction, classifier))
        result["seconds"] = round(time.perf_counter() - start, 2)
        with torch.no_grad():
            shape = model(x).shape
        if shape != expected:
            raise RuntimeError(f"output shape {tuple(shape)} instead of {tuple(expected)}")
        result.update(ok=True, params_after=model_params(model), macs_after=model_macs(model, x))
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - the benchmark records every failure
        if isinstance(err, KeyboardInterrupt) and watchdog.reason is None:
            raise
        error = watchdog.reason if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"[:300]
        result.update(ok=False, seconds=round(time.perf_counter() - start, 2), error=error,
                      where=traceback.extract_tb(err.__traceback__)[-1].filename.split("site-packages/")[-1])
    del model
    gc.collect()
    return result


def main(args):
    torch.set_num_threads(args.threads)
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    if args.first is not None:
        names = names[names.index(args.first):]
    x = torch.randn(1, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(0))
    start, works = time.perf_counter(), {tool: [] for tool in args.tools}
    for index, name in enumerate(names):
        order = args.tools if index % 2 == 0 else list(reversed(args.tools))
        for tool in order:
            result = run_one(name, tool, x, args)
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
