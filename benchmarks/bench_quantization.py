"""Int8 deployment speed and size: our PT2E lowering compiled by inductor vs PyTorch/torchao int8 paths.

One process, per model (torchvision ResNet-18 and MobileNet v2 at 224x224, resnet20_cifar at 32x32; random
weights: no network), builds and times, interleaved (one forward of each variant per round, after a warm-up;
medians):

* ``fp32`` / ``fp32_compiled``: the float model, eager and ``torch.compile`` (freezing);
* ``pytorch_fx_int8``: ``torch.ao.quantization.quantize_fx`` with the x86 qconfig (while torch has it);
* ``torchao_pt2e_compiled`` (the anchor; skipped when ``torchao`` is not installed, ``pip install
  'distiller[bench]'``): torchao's ``prepare_pt2e/convert_pt2e`` with ``X86InductorQuantizer``, compiled;
* ``distiller_default_compiled``: ``PostTrainLinearQuantizer`` with its default settings (symmetric 8-bit
  activations, per-tensor weights; static ranges from ``collect_quant_stats``) through ``compile_int8``;
* ``distiller_asym_pc_compiled``: the same with asymmetric unsigned activations and per-channel weights
  (the settings of the anchor);
* ``ort_fp32`` / ``ort_qdq_int8`` / ``ort_qdq_int8_asym_pc``: ONNX Runtime on the float model and on our
  ``export_onnx_qdq`` files of both settings (ONNX Runtime fuses a conv's ReLU into its integer kernel only when
  the output range starts at 0, i.e. with asymmetric unsigned activations).

``compile_int8`` takes its fast path (torchao's inductor passes) when torchao is installed; the summary says
which fusion ran and how many conv/linear layers became int8 kernels. Prints one JSON line per variant and a
summary per model: ours / anchor latency for both settings (target <= 1.0), top-1 agreement and max logit
difference of the compiled and ONNX Runtime models with our simulated models (target >= 0.99, from
``parity_check``), fp32 / int8 file size (target >= 3.9), and the machine. Needs a C++ compiler (inductor).

Example::

    python benchmarks/bench_quantization.py --threads 2 --batch-size 8 --rounds 20
"""
import argparse
import copy
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings

import torch
import torchvision

from distiller.data_loggers import collect_quant_stats
from distiller.models import create_model
from distiller.quantization import PostTrainLinearQuantizer, export_onnx_qdq, parity_check
from distiller.quantization.export import compile_int8
from distiller.quantization.export.onnx_qdq import export_to_onnx


MODELS = {"resnet18": ("imagenet", 224), "mobilenet_v2": ("imagenet", 224), "resnet20_cifar": ("cifar10", 32)}
#: Our PTQ settings, by variant: the library's defaults, and the anchor's (asymmetric uint8 activations, per-channel
#: symmetric int8 weights).
SETTINGS = {"distiller_default_compiled": {},
            "distiller_asym_pc_compiled": {"mode": {"activations": "asym_u", "weights": "sym"},
                                           "per_channel_wts": True}}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--calibration-batches", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    return parser


def state_dict_bytes(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def pytorch_fx_int8(model, example, calibration):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (example,))
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return convert_fx(prepared)


def torchao_pt2e_compiled(model, example, calibration):
    """torchao's PT2E flow with X86InductorQuantizer, compiled with freezing; None without torchao."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        return None
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    exported = torch.export.export(copy.deepcopy(model), (example,)).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    converted = convert_pt2e(prepared)
    compiled = torch.compile(converted)

    def run(x):
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return compiled(x)
    return run


def simulated_model(model, stats, example, settings):
    simulated = copy.deepcopy(model)
    PostTrainLinearQuantizer(simulated, model_activation_stats=stats, **settings).prepare_model(example[:1])
    return simulated


def fp32_compiled(model):
    compiled = torch.compile(model)

    def run(x):
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return compiled(x)
    return run


def ort_session(path, threads):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def timed(fn, x):
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def bench_model(name, args, machine):
    dataset, size = MODELS[name]
    torch.manual_seed(0)
    model = create_model(False, dataset, name, parallel=False).eval()
    shape = (args.batch_size, 3, size, size)
    calibration = [torch.randn(shape) for _ in range(args.calibration_batches)]
    example = calibration[0]

    stats = collect_quant_stats(model, lambda m: [m(b) for b in calibration])
    simulated = {key: simulated_model(model, stats, example, settings) for key, settings in SETTINGS.items()}
    ours = {key: compile_int8(sim, example) for key, sim in simulated.items()}

    workdir = tempfile.mkdtemp(prefix="bench_quantization_")
    fp32_onnx, qdq_onnx = os.path.join(workdir, "fp32.onnx"), os.path.join(workdir, "int8_qdq.onnx")
    qdq_asym_pc_onnx = os.path.join(workdir, "int8_qdq_asym_pc.onnx")
    export_to_onnx(model, example[:1], fp32_onnx)
    export_onnx_qdq(simulated["distiller_default_compiled"], example[:1], qdq_onnx)
    export_onnx_qdq(simulated["distiller_asym_pc_compiled"], example[:1], qdq_asym_pc_onnx)

    x = torch.randn(shape)
    variants = {"fp32": model, "fp32_compiled": fp32_compiled(model),
                "pytorch_fx_int8": pytorch_fx_int8(model, example, calibration),
                "torchao_pt2e_compiled": torchao_pt2e_compiled(model, example, calibration), **ours,
                "ort_fp32": ort_session(fp32_onnx, args.threads), "ort_qdq_int8": ort_session(qdq_onnx, args.threads),
                "ort_qdq_int8_asym_pc": ort_session(qdq_asym_pc_onnx, args.threads)}
    variants = {key: fn for key, fn in variants.items() if fn is not None}
    parity_inputs = [torch.randn(shape) for _ in range(4)]
    parity = {key: parity_check(simulated[key], parity_inputs, converted_model=ours[key],
                                onnx_path=qdq_onnx if key == "distiller_default_compiled" else None)
              for key in SETTINGS}
    times = {key: [] for key in variants}
    with torch.no_grad():
        for round_index in range(args.warmup + args.rounds):
            for key, fn in variants.items():
                elapsed = timed(fn, x)
                if round_index >= args.warmup:
                    times[key].append(elapsed)
    medians = {key: statistics.median(values) * 1000 for key, values in times.items()}
    for key, median in medians.items():
        print(json.dumps({"model": name, "variant": key, "median_ms": round(median, 3), "rounds": args.rounds,
                          "batch_size": args.batch_size, "image_size": size}))
    int8_bytes = state_dict_bytes(ours["distiller_default_compiled"].lowered)
    sizes = {"fp32": state_dict_bytes(model), "distiller_int8": int8_bytes,
             "ort_fp32": os.path.getsize(fp32_onnx), "ort_qdq_int8": os.path.getsize(qdq_onnx)}
    anchor = medians.get("torchao_pt2e_compiled")
    print(json.dumps({
        "summary": name,
        **{f"{key}_over_torchao_anchor_latency": None if anchor is None else round(medians[key] / anchor, 3)
           for key in SETTINGS},
        **{f"{key}_over_pytorch_fx_latency": round(medians[key] / medians["pytorch_fx_int8"], 3) for key in SETTINGS},
        "fp32_compiled_over_ours_latency": round(medians["fp32_compiled"] / medians["distiller_default_compiled"], 3),
        "fp32_over_int8_file_size": round(sizes["fp32"] / sizes["distiller_int8"], 3),
        "ort_fp32_over_ort_qdq_latency": round(medians["ort_fp32"] / medians["ort_qdq_int8"], 3),
        "ort_fp32_over_ort_qdq_asym_pc_latency": round(medians["ort_fp32"] / medians["ort_qdq_int8_asym_pc"], 3),
        "fusion": {key: f"{compiled.fusion}, {compiled.int8_layers} of {compiled.quantized_layers} layers int8"
                   for key, compiled in ours.items()},
        "file_bytes": sizes, "parity_vs_simulated": parity, **machine}))


def torchao_version():
    try:
        import torchao
    except ImportError:
        return None
    return torchao.__version__


def main(args):
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    machine = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
               "torchvision": torchvision.__version__, "torchao": torchao_version(),
               "load_average": [round(x, 2) for x in os.getloadavg()]}
    for name in args.models:
        bench_model(name, args, machine)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
