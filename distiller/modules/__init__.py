"""Quantization-friendly modules: functional tensor ops as named, wrappable layers."""
from .eltwise import EltwiseAdd, EltwiseDiv, EltwiseMult, EltwiseSub
from .functional import convert_functional_ops, find_functional_ops
from .matmul import BatchMatmul, Matmul
from .rnn import DistillerLSTM, DistillerLSTMCell, convert_model_to_distiller_lstm
from .tensor_ops import Chunk, Concat, Mean, Split, Stack, View

__all__ = ["EltwiseAdd", "EltwiseSub", "EltwiseMult", "EltwiseDiv", "Matmul", "BatchMatmul", "Concat", "Stack",
           "Split", "Chunk", "Mean", "View", "DistillerLSTM", "DistillerLSTMCell",
           "convert_model_to_distiller_lstm", "convert_functional_ops", "find_functional_ops"]
