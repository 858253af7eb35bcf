"""Command-line flags for post-training quantization (``--quantize-eval``, ``--qe-*``, ``--lapq-*``) and the
quantized evaluation they drive in the sample applications.

Usage in an application::

    distiller.cli.add_post_train_quant_args(parser)
    ...
    if args.quantize_eval:  # while setting up: bad settings fail before any data is read
        distiller.cli.quantization.check_quantization_args(model, args)
    ...
    if args.quantize_eval:
        results = distiller.cli.quantization.quantize_and_evaluate(model, args, test_loader, test_fn,
                                                                   dummy_input, run_dir, arch=arch)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

import scipy.optimize
import torch
from torch import nn

from ..apputils.data_loaders import first_batches
from ..collectives import all_reduce_, is_distributed, on_main_process
from ..errors import ArgumentError, InputFileError, ScheduleError, UserError, suggest
from ..quantization.export.inductor import check_cpp_compiler
from ..quantization.export.pytorch_int8 import BACKENDS, X86_BACKENDS
from ..quantization.fp8 import FP8_SCALINGS
from ..quantization.lapq import LAPQ_INIT_MODES
from ..quantization.overrides import override_pattern
from ..quantization.q_utils import ClipMode, parse_clip_mode, parse_linear_quant_mode

if TYPE_CHECKING:  # imported where used: the application imports this module before it needs them
    from ..config import _Source
    from ..quantization import PostTrainLinearQuantizer
    from ..scheduler import CompressionScheduler

__all__ = ["add_post_train_quant_args", "check_quantization_args", "quantizer_from_args", "quantize_and_evaluate",
           "QUANTIZED_CHECKPOINT_NAME"]

msglogger = logging.getLogger(__name__)

#: ``save_checkpoint(name=...)`` prefix of the quantized model's checkpoint (``quantized_checkpoint.pth.tar``).
QUANTIZED_CHECKPOINT_NAME = "quantized"
#: Fraction of the test set used for calibration when no statistics source is given.
DEFAULT_CALIBRATION_FRACTION = 0.1
#: ``test_fn(model, batches) -> {'Top1': ..., 'Loss': ...}``, the application's evaluation.
EvaluateFn = Callable[[nn.Module, Iterable[Any]], Mapping[str, float]]


class _Loader(Protocol):
    """What is read of a data loader: its batches and their number."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


def _argparse_type(parse: Callable[[str], Any], what: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        try:
            parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text
    convert.__name__ = what
    return convert


def _bits(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be between 0 (do not quantize) and 32, got {text}")
    return value


def _portion(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


def add_post_train_quant_args(argparser: argparse.ArgumentParser, add_lapq_args: bool = True) -> None:
    """Adds Distiller's post-training quantization flags (and the LAPQ group) to ``argparser``."""
    mode = _argparse_type(parse_linear_quant_mode, "mode")
    group = argparser.add_argument_group("Post-Training Quantization Arguments")
    group.add_argument("--quantize-eval", "--qe", action="store_true",
                       help="Apply linear quantization to model before evaluation. Applicable only if --evaluate "
                            "is also set")
    group.add_argument("--qe-mode", "--qem", type=mode, default="sym",
                       help="Default linear quantization mode (for weights and activations). "
                            "Choices: sym | sym_restr | asym_s | asym_u")
    group.add_argument("--qe-mode-acts", "--qema", type=mode, default=None,
                       help="Linear quantization mode for activations. Overrides --qe-mode")
    group.add_argument("--qe-mode-wts", "--qemw", type=mode, default=None,
                       help="Linear quantization mode for weights. Overrides --qe-mode")
    group.add_argument("--qe-bits-acts", "--qeba", type=_bits, default=8, metavar="NUM_BITS",
                       help="Number of bits for quantization of activations. Use 0 to not quantize activations")
    group.add_argument("--qe-bits-wts", "--qebw", type=_bits, default=8, metavar="NUM_BITS",
                       help="Number of bits for quantization of weights. Use 0 to not quantize weights")
    group.add_argument("--qe-bits-accum", type=_bits, default=32, metavar="NUM_BITS",
                       help="Number of bits for quantization of the accumulator")
    group.add_argument("--qe-clip-acts", "--qeca", type=_argparse_type(parse_clip_mode, "clip mode"),
                       default="none", help="Activations clipping mode. Choices: none | avg | n_std | gauss | laplace")
    group.add_argument("--qe-clip-n-stds", type=float, default=None,
                       help="When --qe-clip-acts is 'n_std', the number of standard deviations to use")
    group.add_argument("--qe-no-clip-layers", "--qencl", nargs="+", metavar="LAYER_NAME", default=[],
                       help="List of layer names for which not to clip activations")
    group.add_argument("--qe-no-quant-layers", "--qenql", nargs="+", metavar="LAYER_NAME", default=[],
                       help="List of layer names for which to skip quantization")
    group.add_argument("--qe-per-channel", "--qepc", action="store_true",
                       help="Enable per-channel quantization of weights (per output channel)")
    group.add_argument("--qe-scale-approx-bits", "--qesab", type=_bits, default=None, metavar="NUM_BITS",
                       help="Enables scale factor approximation using integer multiply + bit shift, using this "
                            "number of bits the integer multiplier")
    group.add_argument("--qe-save-fp-weights", action="store_true", help="Allow weights requantization")
    group.add_argument("--qe-compile", action="store_true",
                       help="Lower the quantized model to PT2E and compile it to int8 CPU kernels with inductor "
                            "(needs a C++ compiler; fast with torchao installed), evaluate it and check its "
                            "agreement with the simulated model")
    group.add_argument("--qe-convert-pytorch", "--qept", action="store_true",
                       help="Distiller's name for --qe-compile")
    group.add_argument("--qe-pytorch-backend", default="x86", choices=BACKENDS,
                       help="Distiller's quantized engine for --qe-convert-pytorch; the x86 ones all compile for "
                            "this CPU, qnnpack is no longer supported")
    group.add_argument("--qe-export-onnx", action="store_true",
                       help="Also export the quantized model as QDQ ONNX (quantized_qdq.onnx in the run "
                            "directory) and evaluate it with ONNX Runtime")
    group.add_argument("--qe-fp8", choices=FP8_SCALINGS, default=None,
                       help="Quantize Linear layers to FP8 E4M3 with per_tensor or per_row scales (the FP8 "
                            "GPU kernels where available, a simulation elsewhere)")
    stats = group.add_mutually_exclusive_group()
    stats.add_argument("--qe-stats-file", metavar="PATH", help="Path to YAML file with pre-made calibration stats")
    stats.add_argument("--qe-dynamic", action="store_true", help="Apply dynamic quantization")
    stats.add_argument("--qe-calibration", type=_portion, metavar="PORTION_OF_TEST_SET", default=None,
                       help="Run the model in evaluation mode on this portion of the calibration data (the image "
                            "classifier's test set, as in Distiller; the sequence examples' validation data) and "
                            f"collect statistics (default when no other source is given: "
                            f"{DEFAULT_CALIBRATION_FRACTION})")
    stats.add_argument("--qe-config-file", metavar="PATH",
                       help="Path to YAML file containing configuration for PostTrainLinearQuantizer (if present, "
                            "all other --qe* arguments are ignored; without model_activation_stats in it, "
                            "statistics are collected on part of the test set)")
    group.add_argument("--qe-lapq", "--qe-coordinate-search", action="store_true",
                       help="Optimize post-training quantization parameters using LAPQ method")
    if add_lapq_args:
        _add_lapq_args(argparser)


def _add_lapq_args(argparser: argparse.ArgumentParser) -> None:
    group = argparser.add_argument_group("Post-Training Quantization Auto-Optimization (LAPQ) Arguments")
    group.add_argument("--lapq-maxiter", type=int, default=None, help="Max iteration for minimization method")
    group.add_argument("--lapq-maxfev", type=int, default=None,
                       help="Max function evaluations for minimization method")
    group.add_argument("--lapq-method", default="Powell", help="Minimization method used by scipy.optimize.minimize")
    group.add_argument("--lapq-basinhopping", "--lapq-bh", action="store_true",
                       help="Use scipy.optimize.basinhopping stochastic global minimum search")
    group.add_argument("--lapq-basinhopping-niter", "--lapq-bh-niter", type=int, default=100,
                       help="Number of iterations for the basinhopping algorithm")
    group.add_argument("--lapq-init-mode", default="NONE", type=str.upper, choices=LAPQ_INIT_MODES,
                       help="The mode of quant initialization. Choices: " + "|".join(LAPQ_INIT_MODES))
    group.add_argument("--lapq-init-method", default="Powell",
                       help="If --lapq-init-mode is L1/L2/L3, the method of minimization")
    group.add_argument("--lapq-eval-size", type=_portion, default=1.0,
                       help="Portion of test dataset to use for the evaluation (loss) function")
    group.add_argument("--lapq-eval-memoize-dataloader", action="store_true",
                       help="Stores the input batches in memory to optimize performance")
    group.add_argument("--lapq-search-clipping", action="store_true",
                       help="Search on clipping values instead of scale/zero_point")


def _config_file_quantizer_args(path: str) -> tuple[str, dict[str, Any], _Source]:
    """(instance name, arguments, YAML source) of the one PostTrainLinearQuantizer in a file's ``quantizers``.

    Raises:
        distiller.errors.InputFileError: the file does not exist.
        distiller.errors.ScheduleError: malformed YAML, not exactly one PostTrainLinearQuantizer, an unknown
            argument, a ``model_activation_stats`` file that does not exist (file, YAML path and line).
    """
    from ..config import load_schedule_file
    from ..quantization import PostTrainLinearQuantizer

    if not os.path.isfile(path):
        raise InputFileError(f"--qe-config-file: no such file '{path}'")
    sched, source = load_schedule_file(path)
    quantizers = sched.get("quantizers") if isinstance(sched, dict) else None
    entries = [(name, spec) for name, spec in quantizers.items()
               if isinstance(spec, dict) and spec.get("class") == "PostTrainLinearQuantizer"] \
        if isinstance(quantizers, dict) else []
    if len(entries) != 1:
        raise source.error(f"expected exactly one PostTrainLinearQuantizer in the 'quantizers' section, found "
                           f"{len(entries)}", ("quantizers",))
    name, spec = entries[0]
    args = {k: v for k, v in spec.items() if k != "class"}
    valid = [p for p in inspect.signature(PostTrainLinearQuantizer).parameters if p != "model"]
    for key in args:
        if key not in valid:
            hint = suggest(key, valid)
            raise source.error(f"PostTrainLinearQuantizer has no argument '{key}'"
                               + (f"; did you mean {hint}?" if hint else ""), ("quantizers", name, key))
    stats = args.get("model_activation_stats")
    if isinstance(stats, str) and not os.path.isfile(stats):
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), stats)
        if not os.path.isfile(beside):
            raise source.error(f"calibration statistics file '{stats}' does not exist (nor beside the config "
                               f"file)", ("quantizers", name, "model_activation_stats"))
        args["model_activation_stats"] = beside
    return name, args, source


@contextlib.contextmanager
def _quantizer_errors(args: argparse.Namespace) -> Iterator[None]:
    """Reports the quantizer's user errors in the user's terms: a ``--qe-config-file`` problem as a
    ScheduleError at the YAML path and line of the argument (and the place inside its value, e.g. an
    override's setting) or of the override whose pattern it names, a ``--qe-no-quant-layers`` /
    ``--qe-no-clip-layers`` problem as an ArgumentError naming the flag."""
    try:
        yield
    except (ScheduleError, InputFileError):
        raise
    except UserError as err:
        pattern = override_pattern(err)
        if args.qe_config_file:
            name, qargs, source = _config_file_quantizer_args(args.qe_config_file)
            if isinstance(err, ArgumentError):
                raise source.argument_error(err, ("quantizers", name)) from None
            path: tuple[Any, ...] = ("quantizers", name)
            if isinstance(qargs.get("overrides"), dict) and pattern in qargs["overrides"]:
                path += ("overrides", pattern)
            raise source.error(str(err), path) from None
        for flag, layers in (("--qe-no-quant-layers", args.qe_no_quant_layers),
                             ("--qe-no-clip-layers", args.qe_no_clip_layers)):
            if pattern in layers:
                raise ArgumentError(f"{flag} {pattern}: {err}") from None
        raise


def quantizer_from_args(model: nn.Module, args: argparse.Namespace,
                        stats: Optional[Union[str, Mapping[str, Any]]] = None) -> PostTrainLinearQuantizer:
    """Builds the :class:`PostTrainLinearQuantizer` described by the ``--qe-*`` flags (or ``--qe-config-file``).

    Args:
        stats: calibration statistics (dict or YAML path) when collected by the caller; by default
            ``--qe-stats-file``, or None (dynamic ranges). A config file's own ``model_activation_stats``
            takes precedence.
    Raises:
        distiller.errors.ScheduleError: a problem in ``--qe-config-file`` (file, YAML path and line).
        distiller.errors.ArgumentError: a bad flag (the message names it).
    """
    from ..quantization import PostTrainLinearQuantizer

    if args.qe_config_file:
        _, kwargs, _ = _config_file_quantizer_args(args.qe_config_file)
        if stats is not None and "model_activation_stats" not in kwargs:
            kwargs["model_activation_stats"] = stats
    else:
        overrides: dict[str, dict[str, Any]] = {}
        for layer in args.qe_no_quant_layers:
            overrides[layer] = {"bits_activations": None, "bits_weights": None}
        for layer in args.qe_no_clip_layers:
            overrides.setdefault(layer, {})["clip_acts"] = "NONE"
        if stats is None and not args.qe_dynamic:
            stats = args.qe_stats_file
        kwargs = dict(bits_activations=args.qe_bits_acts or None, bits_parameters=args.qe_bits_wts or None,
                      bits_accum=args.qe_bits_accum, overrides=overrides or None,
                      mode={"activations": args.qe_mode_acts or args.qe_mode,
                            "weights": args.qe_mode_wts or args.qe_mode},
                      clip_acts=args.qe_clip_acts, per_channel_wts=args.qe_per_channel, model_activation_stats=stats,
                      clip_n_stds=args.qe_clip_n_stds, scale_approx_mult_bits=args.qe_scale_approx_bits,
                      save_fp_weights=args.qe_save_fp_weights or getattr(args, "qe_lapq", False),
                      fp8=args.qe_fp8 is not None, fp8_scaling=args.qe_fp8 or "per_tensor")
    with _quantizer_errors(args):
        return PostTrainLinearQuantizer(model, **kwargs)


def _check_compile_flags(args: argparse.Namespace) -> None:
    """--qe-compile / --qe-convert-pytorch: static ranges, an x86 engine and a C++ compiler."""
    flag = "--qe-compile" if getattr(args, "qe_compile", False) else "--qe-convert-pytorch"
    if args.qe_dynamic:
        raise ArgumentError(f"{flag} lowers to int8 kernels with static activation ranges: drop --qe-dynamic")
    if args.qe_pytorch_backend not in X86_BACKENDS:
        raise ArgumentError(f"--qe-pytorch-backend {args.qe_pytorch_backend}: the int8 lowering compiles for x86 "
                            f"CPUs ({', '.join(X86_BACKENDS)}); the deprecated qnnpack modules are not supported")
    check_cpp_compiler()


def _check_flags(args: argparse.Namespace) -> None:
    """The flag checks that need neither the model nor the data."""
    if args.qe_stats_file and not os.path.isfile(args.qe_stats_file):
        raise InputFileError(f"--qe-stats-file: no such file '{args.qe_stats_file}'")
    if not args.qe_config_file and parse_clip_mode(args.qe_clip_acts) == ClipMode.N_STD and args.qe_clip_n_stds is None:
        raise ArgumentError("--qe-clip-acts n_std needs --qe-clip-n-stds (the number of standard deviations)")
    if getattr(args, "qe_compile", False) or getattr(args, "qe_convert_pytorch", False):
        _check_compile_flags(args)
    if not getattr(args, "qe_lapq", False):
        return
    if args.qe_dynamic:
        raise ArgumentError("--qe-lapq searches static ranges from calibration statistics: drop --qe-dynamic")
    for flag, method in (("--lapq-method", args.lapq_method), ("--lapq-init-method", args.lapq_init_method)):
        if flag == "--lapq-init-method" and method.lower() == "bounded":
            continue
        try:
            scipy.optimize.show_options(solver="minimize", method=method, disp=False)
        except ValueError:
            raise ArgumentError(f"{flag} {method}: not a scipy.optimize.minimize method (e.g. Powell, "
                                f"Nelder-Mead, L-BFGS-B)") from None


#: Flags of the post-training quantization group that evaluate or deploy a quantized model rather than say how to
#: quantize it.
_DEPLOYMENT_FLAGS = {"quantize_eval", "qe_compile", "qe_convert_pytorch", "qe_pytorch_backend", "qe_export_onnx"}


def _quantization_flags_given(args: argparse.Namespace) -> list[str]:
    """The flags that configure post-training quantization and differ from their defaults, as spelled on the
    command line."""
    defaults = argparse.ArgumentParser(add_help=False)
    add_post_train_quant_args(defaults)
    return [action.option_strings[0] for action in defaults._actions
            if action.option_strings and action.dest not in _DEPLOYMENT_FLAGS and hasattr(args, action.dest)
            and getattr(args, action.dest) != action.default]


def _trained_quantizer(model: nn.Module, args: argparse.Namespace) -> Optional[str]:
    """The name of the quantizer that trained ``model`` if it is quantization-aware-trained range-linear (which
    ``--quantize-eval`` evaluates and deploys as trained), None for a float model.

    Raises:
        distiller.errors.ArgumentError: a model prepared by another quantizer, or post-training settings given for
            a quantization-aware-trained model (they would not apply).
    """
    from ..quantization import QuantAwareTrainRangeLinearQuantizer
    from ..quantization.base import preparing_quantizer_class

    trained = preparing_quantizer_class(model)
    if trained is None:
        return None
    if not issubclass(trained, QuantAwareTrainRangeLinearQuantizer):
        raise ArgumentError(f"--quantize-eval: the model was prepared by {trained.__name__}, whose quantization "
                            f"post-training quantization cannot redo and integer deployment does not lower; evaluate "
                            f"it without --quantize-eval (its own quantized forward is what the test measures)")
    given = _quantization_flags_given(args)
    if given:
        raise ArgumentError(f"{given[0]} configures post-training quantization, but the model was trained with "
                            f"{trained.__name__}: --quantize-eval evaluates it with its trained ranges and weights "
                            f"(and --qe-compile / --qe-export-onnx deploy it); drop {', '.join(given)}")
    return trained.__name__


def check_quantization_args(model: nn.Module, args: argparse.Namespace) -> None:
    """Validates the whole post-training quantization configuration against ``model`` before any data is read.

    Checks the files and flag combinations, builds the quantizer that the flags or ``--qe-config-file``
    describe on a copy of ``model`` and decides how each layer is quantized: nothing is calibrated and
    ``model`` does not change. A model trained by :class:`QuantAwareTrainRangeLinearQuantizer` is evaluated and
    deployed as trained, so only the deployment flags apply to it. :func:`quantize_and_evaluate` runs it first;
    applications run it while setting up, before they evaluate the float model.

    Raises:
        distiller.errors.ScheduleError: a problem in ``--qe-config-file`` (file, YAML path and line).
        distiller.errors.ArgumentError: a bad flag or flag combination (the message names the flag), also
            post-training settings for a quantization-aware-trained model, or a model another quantizer prepared.
        distiller.errors.InputFileError: ``--qe-config-file`` or ``--qe-stats-file`` does not exist.
    """
    _check_flags(args)
    if _trained_quantizer(model, args) is not None:
        return
    quantizer = quantizer_from_args(copy.deepcopy(model), args)
    with _quantizer_errors(args):
        quantizer.check_settings()


class _LoaderPortion:
    """The first ``count`` batches of a loader, re-read from the loader at every iteration."""

    def __init__(self, loader: _Loader, count: int) -> None:
        self.loader, self.count = loader, count

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.count)

    def __len__(self) -> int:
        return self.count


def _calibration_stats(model: nn.Module, args: argparse.Namespace, test_loader: _Loader, test_fn: EvaluateFn,
                       run_dir: str) -> Optional[dict[str, Any]]:
    """Collects statistics on a portion of the test set unless another source is configured."""
    from ..data_loggers import collect_quant_stats

    if args.qe_dynamic or args.qe_stats_file:
        return None
    if args.qe_config_file and "model_activation_stats" in _config_file_quantizer_args(args.qe_config_file)[1]:
        return None
    portion = args.qe_calibration or DEFAULT_CALIBRATION_FRACTION
    # Distributed: each process calibrates on its shard of the first global batches, as many as the whole data
    # has (the longest shard's count), and the statistics are combined over the processes.
    total = torch.tensor([len(test_loader)])
    all_reduce_([total], torch.distributed.ReduceOp.MAX)
    batches = first_batches(test_loader, portion, total=int(total))
    msglogger.info("Collecting quantization calibration statistics on %d batches (%.0f%% of the test set)",
                   len(batches), 100 * portion)
    return collect_quant_stats(model, lambda m: test_fn(m, batches), save_dir=run_dir,
                               combine_processes=is_distributed())


def _run_lapq(quantizer: PostTrainLinearQuantizer, args: argparse.Namespace, test_loader: _Loader,
              test_fn: EvaluateFn, dummy_input: Any) -> None:
    from ..quantization.lapq import ptq_coordinate_search

    count = max(1, math.ceil(args.lapq_eval_size * len(test_loader)))
    batches = first_batches(test_loader, args.lapq_eval_size) if args.lapq_eval_memoize_dataloader \
        else _LoaderPortion(test_loader, count)
    ptq_coordinate_search(quantizer, dummy_input, lambda m: test_fn(m, batches)["Loss"],
                          method=args.lapq_method, maxiter=args.lapq_maxiter, maxfev=args.lapq_maxfev,
                          basinhopping=args.lapq_basinhopping, basinhopping_niter=args.lapq_basinhopping_niter,
                          init_mode=args.lapq_init_mode, init_method=args.lapq_init_method,
                          search_clipping=args.lapq_search_clipping)


def _save_quantized_checkpoint(model: nn.Module, quantizer: PostTrainLinearQuantizer, arch: Optional[str],
                               scheduler: Optional[CompressionScheduler], run_dir: str, epoch: int,
                               extras: Mapping[str, Any]) -> str:
    from ..apputils import save_checkpoint
    from ..scheduler import CompressionScheduler

    scheduler = scheduler if scheduler is not None else CompressionScheduler(model)
    # The weights now hold integer codes (pruned ones the code of 0.0): the masks have done their job.
    scheduler.record_transform("quantization", {"quantizer": quantizer.state_dict()}, keep_masks=False)
    return on_main_process(save_checkpoint)(epoch, arch, model, scheduler=scheduler, name=QUANTIZED_CHECKPOINT_NAME,
                                            dir=run_dir, extras=extras)


def _combined_parity(result: dict[str, Any]) -> dict[str, Any]:
    """A :func:`~distiller.quantization.export.parity_check` result over every process's shard of the test set
    (agreement weighted by the shards' sizes, the largest difference of all); ``result`` outside a process group."""
    if not is_distributed():
        return result
    forms = [key for key, entry in result.items() if isinstance(entry, dict)]
    samples = float(result["samples"])
    sums = torch.tensor([samples, *(result[form]["top1_agreement"] * samples for form in forms)], dtype=torch.float64)
    maxima = torch.tensor([result[form]["max_abs_diff"] for form in forms], dtype=torch.float64)
    all_reduce_([sums])
    all_reduce_([maxima], op=torch.distributed.ReduceOp.MAX)
    combined: dict[str, Any] = {"samples": int(sums[0].item())}
    for index, form in enumerate(forms):
        combined[form] = {"top1_agreement": (sums[index + 1] / sums[0]).item(), "max_abs_diff": maxima[index].item()}
    return combined


def quantize_and_evaluate(model: nn.Module, args: argparse.Namespace, test_loader: _Loader, test_fn: EvaluateFn,
                          dummy_input: Any, run_dir: str, arch: Optional[str] = None,
                          scheduler: Optional[CompressionScheduler] = None, epoch: int = 0) -> dict[str, Any]:
    """Quantizes ``model`` in place as the ``--qe-*`` flags say, evaluates it and saves the checkpoint.

    Validates the whole configuration first (:func:`check_quantization_args`), then calibrates on
    ``--qe-calibration`` of the test set (default 0.1) unless ``--qe-stats-file``, ``--qe-dynamic`` or a
    ``--qe-config-file`` with ``model_activation_stats`` is given, optionally runs LAPQ (``--qe-lapq``),
    evaluates, saves ``quantized_checkpoint.pth.tar`` in ``run_dir`` (it reloads with ``load_checkpoint`` on a
    fresh model), and with ``--qe-compile`` (or ``--qe-convert-pytorch``) / ``--qe-export-onnx`` compiles/exports
    the model, evaluates the integer versions and checks their agreement with the simulated model (and with each
    other) on the whole test set.

    In a distributed run every process calls it with its shard of the test set (``test_fn`` all-reducing the
    scores): each calibrates on its shard of the first global batches and the statistics are combined over the
    processes (:meth:`~distiller.data_loggers.QuantCalibrationStatsCollector.combine_processes`), so every
    process quantizes alike; only rank 0 writes the statistics and the checkpoint.

    Args:
        model: the trained float model (quantized in place).
        test_fn: ``fn(model, loader) -> {'Top1': ..., 'Loss': ...}``, the application's evaluation.
        dummy_input: an example input batch.
        scheduler: the run's CompressionScheduler, if any (the quantization record is added to it).
    Returns:
        ``{'quantized': {...}, 'pytorch_int8': {...}, 'onnxruntime': {...}, 'parity': {...},
        'checkpoint': path}`` (the integer entries only when requested; for a model trained with
        quantization-aware training, evaluated and deployed as trained, ``checkpoint`` is None and a
        ``trained_with`` entry names the quantizer).
    Raises:
        distiller.errors.ScheduleError, distiller.errors.ArgumentError, distiller.errors.InputFileError: see
            :func:`check_quantization_args` (raised before any data is read).
    """
    from ..quantization.export import OnnxRuntimeModule, compile_int8, export_onnx_qdq, format_parity, parity_check
    from ..quantization.export.from_qat import post_train_equivalent

    check_quantization_args(model, args)
    trained = _trained_quantizer(model, args)
    if trained is None:
        stats = _calibration_stats(model, args, test_loader, test_fn, run_dir)
        quantizer = quantizer_from_args(model, args, stats)
        with _quantizer_errors(args):  # statistics that do not cover a layer are found only now
            if args.qe_lapq:
                _run_lapq(quantizer, args, test_loader, test_fn, dummy_input)
            else:
                quantizer.prepare_model(dummy_input)
        msglogger.debug("Quantized model:\n%s", model)
    else:
        msglogger.info("The model was trained with %s: evaluating it as trained (no post-training quantization; "
                       "its checkpoint is the one it was loaded from)", trained)
    results: dict[str, Any] = {"quantized": test_fn(model, test_loader)}
    msglogger.info("Quantized (simulated) model: top1 %.2f  loss %.4f", results["quantized"]["Top1"],
                   results["quantized"]["Loss"])
    if trained:
        results["trained_with"] = trained
    results["checkpoint"] = None if trained else _save_quantized_checkpoint(
        model, quantizer, arch, scheduler, run_dir, epoch, {"quantized_top1": results["quantized"]["Top1"]})
    converted = onnx_path = None
    deploying = getattr(args, "qe_compile", False) or args.qe_convert_pytorch or args.qe_export_onnx
    # a QAT model is converted to its post-training-quantized equivalent once, for both deployments
    deployable = post_train_equivalent(model) if trained and deploying else model
    if getattr(args, "qe_compile", False) or args.qe_convert_pytorch:
        converted = compile_int8(deployable, dummy_input)
        results["pytorch_int8"] = test_fn(converted, test_loader)
        msglogger.info("Compiled int8 model (%s fusion, %d of %d conv/linear layers int8): top1 %.2f",
                       converted.fusion, converted.int8_layers, converted.quantized_layers,
                       results["pytorch_int8"]["Top1"])
    if args.qe_export_onnx:  # written by rank 0 under torchrun, which every process then evaluates its shard with
        onnx_path = on_main_process(export_onnx_qdq)(deployable, dummy_input,
                                                     os.path.join(run_dir, "quantized_qdq.onnx"))
        results["onnxruntime"] = test_fn(OnnxRuntimeModule(onnx_path), test_loader)
        msglogger.info("ONNX Runtime QDQ model (%s): top1 %.2f", onnx_path, results["onnxruntime"]["Top1"])
    if converted is not None or onnx_path is not None:
        results["parity"] = _combined_parity(parity_check(model, test_loader, converted, onnx_path))
        msglogger.info("Agreement of the deployed models:\n%s", format_parity(results["parity"]))
    return results
