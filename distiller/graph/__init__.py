"""Graph capture: a model's operations, data flow, tensor shapes and per-layer costs (torch.fx based), and
the channel dependencies that structured pruning and thinning share."""
from .capture import GraphCaptureError, eval_mode, propagate_shapes, trace_model
from .channel_flow import LayerCall
from .cost import COUNTED_LAYERS, module_macs, module_params
from .dependency import DependencyGraph, DependencyGroup
from .layer_rules import LayerRule, layer_rule_for, register_layer_rule, select
from .summary_graph import Op, SummaryGraph
from .wrappers import WrapperRule, layer_weight, unwrap

__all__ = ["SummaryGraph", "Op", "GraphCaptureError", "trace_model", "propagate_shapes", "eval_mode",
           "module_macs", "module_params", "COUNTED_LAYERS", "DependencyGraph", "DependencyGroup", "LayerRule",
           "LayerCall", "register_layer_rule", "layer_rule_for", "select", "WrapperRule", "unwrap", "layer_weight"]
