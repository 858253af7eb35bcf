"""Graph capture: a model's operations, data flow, tensor shapes and per-layer costs (torch.fx based)."""
from .capture import GraphCaptureError, eval_mode, propagate_shapes, trace_model
from .cost import COUNTED_LAYERS, module_macs, module_params
from .summary_graph import Op, SummaryGraph

__all__ = ["SummaryGraph", "Op", "GraphCaptureError", "trace_model", "propagate_shapes", "eval_mode",
           "module_macs", "module_params", "COUNTED_LAYERS"]
