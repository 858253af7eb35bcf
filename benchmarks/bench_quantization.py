"""Int8 deployment speed and size: our PTQ conversion vs PyTorch's own FX int8 path vs fp32, and ONNX Runtime.

One process builds torchvision ResNet-18 (random weights: no network) and, from it:

* ``fp32``: the float model, eager PyTorch;
* ``distiller_int8``: ``PostTrainLinearQuantizer`` (8-bit, asymmetric unsigned activations, symmetric
  per-channel weights, static ranges from ``collect_quant_stats``) converted with
  ``convert_distiller_ptq_model_to_pytorch`` (x86 backend);
* ``pytorch_fx_int8``: ``torch.ao.quantization.quantize_fx.prepare_fx/convert_fx`` with the x86 qconfig
  mapping, calibrated on the same batches;
* ``ort_fp32`` / ``ort_qdq_int8``: ONNX Runtime (CPU, same thread count) on the float model exported to
  ONNX and on our ``export_onnx_qdq`` file.

Latencies are measured interleaved (one forward of each variant per round), after a warm-up, and
reported as medians. Prints one JSON object per variant and a summary line with the ratios (targets:
ours / PyTorch FX <= 1.15, fp32 / int8 file size >= 3.9, ORT fp32 / ORT QDQ >= 2) and the machine.

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
from distiller.quantization import (PostTrainLinearQuantizer, convert_distiller_ptq_model_to_pytorch,
                                    export_onnx_qdq, parity_check)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
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


def main(args):
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    model = torchvision.models.resnet18().eval()
    calibration = [torch.randn(shape) for _ in range(args.calibration_batches)]
    example = calibration[0][:1]

    stats = collect_quant_stats(model, lambda m: [m(b) for b in calibration])
    simulated = copy.deepcopy(model)
    PostTrainLinearQuantizer(simulated, model_activation_stats=stats, per_channel_wts=True,
                             mode={"activations": "ASYMMETRIC_UNSIGNED", "weights": "SYMMETRIC"}).prepare_model()
    ours = convert_distiller_ptq_model_to_pytorch(simulated, example, backend="x86")
    theirs = pytorch_fx_int8(model, example, calibration)

    workdir = tempfile.mkdtemp(prefix="bench_quantization_")
    fp32_onnx, qdq_onnx = os.path.join(workdir, "fp32.onnx"), os.path.join(workdir, "int8_qdq.onnx")
    torch.onnx.export(model, (example,), fp32_onnx, dynamo=False, opset_version=13, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    export_onnx_qdq(simulated, example, qdq_onnx)

    x = torch.randn(shape)
    parity = parity_check(simulated, [x], converted_model=ours, onnx_path=qdq_onnx)
    variants = {"fp32": model, "distiller_int8": ours, "pytorch_fx_int8": theirs,
                "ort_fp32": ort_session(fp32_onnx, args.threads), "ort_qdq_int8": ort_session(qdq_onnx, args.threads)}
    times = {name: [] for name in variants}
    with torch.no_grad():
        for round_index in range(args.warmup + args.rounds):
            for name, fn in variants.items():
                elapsed = timed(fn, x)
                if round_index >= args.warmup:
                    times[name].append(elapsed)
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    machine = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
               "torchvision": torchvision.__version__}
    for name, median in medians.items():
        print(json.dumps({"variant": name, "median_ms": round(median, 2), "rounds": args.rounds,
                          "batch_size": args.batch_size, "image_size": args.image_size}))
    sizes = {"fp32": state_dict_bytes(model), "distiller_int8": state_dict_bytes(ours),
             "pytorch_fx_int8": state_dict_bytes(theirs), "ort_fp32": os.path.getsize(fp32_onnx),
             "ort_qdq_int8": os.path.getsize(qdq_onnx)}
    print(json.dumps({
        "summary": "resnet18_int8",
        "ours_over_pytorch_fx_latency": round(medians["distiller_int8"] / medians["pytorch_fx_int8"], 3),
        "fp32_over_ours_latency": round(medians["fp32"] / medians["distiller_int8"], 3),
        "fp32_over_int8_file_size": round(sizes["fp32"] / sizes["distiller_int8"], 3),
        "ort_fp32_over_ort_qdq_latency": round(medians["ort_fp32"] / medians["ort_qdq_int8"], 3),
        "onnx_fp32_over_qdq_file_size": round(sizes["ort_fp32"] / sizes["ort_qdq_int8"], 3),
        "file_bytes": sizes, "parity_vs_simulated": parity, **machine}))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
