"""Quantization: the Quantizer framework, linear quantization primitives, quantization-aware training.

Each method is a :class:`Quantizer` subclass; the ones usable from a YAML ``quantizers:`` section are
registered in :data:`distiller.registry.QUANTIZERS`.
"""
from . import replay  # noqa: F401  (registers the 'quantization' model-transform replayer)
from .base import FP_BKP_PREFIX, ParamToQuant, QBits, Quantizer
from .bn_fold import SimulatedFoldedBatchNorm
from .clipped_linear import (ClippedLinearQuantization, DorefaQuantizer, LearnedClippedLinearQuantization,
                             PACTQuantizer, WRPNQuantizer)
from .overrides import OverrideError
from .q_utils import (ClipMode, LinearQuantMode, LinearQuantizeSTE, ModuleQuantMode,
                      approx_scale_as_mult_and_shift, asymmetric_linear_quantization_params,
                      get_quantized_range, linear_dequantize, linear_quantize, linear_quantize_clamp,
                      symmetric_linear_quantization_params)
from .range_linear.qat import FakeLinearQuantization, FakeQuantizationWrapper, QuantAwareTrainRangeLinearQuantizer

__all__ = ["Quantizer", "QBits", "ParamToQuant", "FP_BKP_PREFIX", "OverrideError",
           "LinearQuantMode", "ClipMode", "ModuleQuantMode", "LinearQuantizeSTE",
           "symmetric_linear_quantization_params", "asymmetric_linear_quantization_params",
           "linear_quantize", "linear_quantize_clamp", "linear_dequantize", "get_quantized_range",
           "approx_scale_as_mult_and_shift",
           "DorefaQuantizer", "PACTQuantizer", "WRPNQuantizer", "ClippedLinearQuantization",
           "LearnedClippedLinearQuantization",
           "QuantAwareTrainRangeLinearQuantizer", "FakeLinearQuantization", "FakeQuantizationWrapper",
           "SimulatedFoldedBatchNorm"]

# Post-training quantization, FP8, integer deployment and LAPQ (owned by the PTQ part).
from .fp8 import FP8LinearWrapper
from .range_linear import (FP16Wrapper, PostTrainLinearQuantizer, RangeLinearEmbeddingWrapper,
                           RangeLinearFakeQuantWrapper, RangeLinearQuantConcatWrapper,
                           RangeLinearQuantEltwiseAddWrapper, RangeLinearQuantEltwiseMultWrapper,
                           RangeLinearQuantMatmulWrapper, RangeLinearQuantParamLayerWrapper, RangeLinearQuantWrapper)

__all__ += ["PostTrainLinearQuantizer", "RangeLinearQuantWrapper", "RangeLinearQuantParamLayerWrapper",
            "RangeLinearQuantMatmulWrapper", "RangeLinearQuantEltwiseAddWrapper", "RangeLinearQuantEltwiseMultWrapper",
            "RangeLinearQuantConcatWrapper", "RangeLinearEmbeddingWrapper", "RangeLinearFakeQuantWrapper",
            "FP16Wrapper", "FP8LinearWrapper"]
from .export import ExportError, convert_distiller_ptq_model_to_pytorch, export_onnx_qdq, parity_check  # noqa: E402

__all__ += ["convert_distiller_ptq_model_to_pytorch", "export_onnx_qdq", "parity_check", "ExportError"]
from .lapq import ptq_coordinate_search  # noqa: E402

__all__ += ["ptq_coordinate_search"]
from . import layer_rules  # noqa: F401,E402  (registers how the dependency graph and thinning see quantized modules)
from ..cli.quantization import add_post_train_quant_args  # noqa: E402  (Distiller's home of the --qe-* flags)

__all__ += ["add_post_train_quant_args"]
