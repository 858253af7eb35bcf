"""Range-linear quantization: post-training (integer-simulated wrappers) and quantization-aware training."""
from .eltwise_wrappers import (RangeLinearQuantConcatWrapper, RangeLinearQuantEltwiseAddWrapper,
                               RangeLinearQuantEltwiseMultWrapper)
from .param_wrappers import (RangeLinearEmbeddingWrapper, RangeLinearQuantMatmulWrapper,
                             RangeLinearQuantParamLayerWrapper)
from .post_train import PostTrainLinearQuantizer
from .ptq_graph import fold_batch_norm
from .wrappers import (FP16Wrapper, FPWrapper, RangeLinearFakeQuantWrapper, RangeLinearQuantWrapper,
                       saturation_range_from_stats)

__all__ = ["PostTrainLinearQuantizer", "RangeLinearQuantWrapper", "RangeLinearQuantParamLayerWrapper",
           "RangeLinearQuantMatmulWrapper", "RangeLinearQuantEltwiseAddWrapper", "RangeLinearQuantEltwiseMultWrapper",
           "RangeLinearQuantConcatWrapper", "RangeLinearEmbeddingWrapper", "RangeLinearFakeQuantWrapper",
           "FP16Wrapper", "FPWrapper", "saturation_range_from_stats", "fold_batch_norm"]
