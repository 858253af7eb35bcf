"""Per-layer FP8 / int8 weight-only Linear conversion: :func:`distiller.quantization.export.accelerate_linears`
on transformer-style Linear shapes, each method against the dense layer on the same input (interleaved medians).

For each ``in x out`` shape and each number of tokens (batch x sequence), one Linear layer in ``--dtype`` is
given to ``accelerate_linears``, which checks each method's output against the dense one, times them and says
what it would convert. Methods that cannot run here (FP8 without a CUDA GPU of compute capability >= 8.9,
int8 weight-only without torchao) say why in the report. ``--compiled`` times the layers under
``torch.compile`` as well (int8 weight-only is fast only there: eagerly it casts its weight on every call).

Prints one JSON object per layer, mode and method (the rows of ``acceleration_table``), the text tables on
stderr, and the machine first. ``benchmarks/bench_gpu.py --sections fast_linear`` runs the GPU defaults.

Example::

    python benchmarks/bench_fast_linear.py --device cpu --dtype float32 --shapes 1024x1024 4096x1024 --tokens 8 256
    python benchmarks/bench_fast_linear.py --device cuda --compiled          # 4096x4096, 8192x8192, 4096x16384
"""
import argparse
import json
import math
import sys

import torch
from torch import nn

from distiller.quantization.export import acceleration_table, accelerate_linears, format_accelerations
from machine import machine

#: Transformer projections: attention (d x d), a wide model's attention, the MLP's up projection.
TRANSFORMER_SHAPES = ("4096x4096", "8192x8192", "4096x16384")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--shapes", nargs="+", default=list(TRANSFORMER_SHAPES), help="in_features x out_features")
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 16],
                        help="rows of the layer's input (batch x sequence length): prefill and decode")
    parser.add_argument("--methods", nargs="+", default=["fp8", "fp8_per_row", "int8_weight_only"])
    parser.add_argument("--compiled", action="store_true", help="also time the layers under torch.compile")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per variant (interleaved)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU; default: torch's)")
    return parser


def parse_shape(text):
    try:
        in_features, out_features = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--shapes: '{text}' is not IN x OUT, e.g. 4096x16384") from None
    return in_features, out_features


def json_number(value):
    """Floats rounded, NaN (a value that does not apply) as null."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 5)
    return value


def layer_reports(args, device, emit):
    """Runs accelerate_linears on one Linear per shape, token count and mode; emits every table row."""
    dtype = getattr(torch, args.dtype)
    for shape in args.shapes:
        in_features, out_features = parse_shape(shape)
        for tokens in args.tokens:
            for compiled in (False, True) if args.compiled else (False,):
                torch.manual_seed(0)
                model = nn.Sequential(nn.Linear(in_features, out_features, device=device, dtype=dtype))
                x = torch.randn(tokens, in_features, device=device, dtype=dtype)
                report = accelerate_linears(model, x, methods=args.methods, compiled=compiled, warmup=args.warmup,
                                            repeats=args.rounds)
                print(f"\n{shape}, {tokens} tokens, {args.dtype}, {'compiled' if compiled else 'eager'}:\n"
                      f"{format_accelerations(report)}", file=sys.stderr, flush=True)
                for row in acceleration_table(report).to_dict(orient="records"):
                    emit(shape=[in_features, out_features], tokens=tokens, dtype=args.dtype, compiled=compiled,
                         **{k: json_number(v) for k, v in row.items() if k not in ("layer", "dtype")})


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(json.dumps({"bench": "fast_linear", "machine": machine()}), flush=True)
    layer_reports(args, device, lambda **fields: print(json.dumps({"bench": "fast_linear", **fields}), flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
