"""Model summaries: compute cost (MACs, feature-map shapes) per layer, weights and mask sparsity, graph
connectivity and attributes, and Distiller's ``model_summary``."""
from .compute import SUMMARY_COLUMNS, model_macs, model_params, model_performance_summary
from .graph import (attributes_summary, attributes_summary_tbl, connectivity_summary, connectivity_summary_verbose,
                    connectivity_tbl_summary, op_attributes)
from .model_summary import SUMMARY_KINDS, model_performance_tbl_summary, model_summary
from .onnx_export import export_img_classifier_to_onnx
from .sparsity import (WEIGHTS_SPARSITY_COLUMNS, masks_sparsity_summary, masks_sparsity_tbl_summary,
                       weights_sparsity_summary, weights_sparsity_tbl_summary)

__all__ = ["model_performance_summary", "model_macs", "model_params", "SUMMARY_COLUMNS",
           "model_performance_tbl_summary", "model_summary", "SUMMARY_KINDS",
           "weights_sparsity_summary", "weights_sparsity_tbl_summary", "masks_sparsity_summary",
           "masks_sparsity_tbl_summary", "WEIGHTS_SPARSITY_COLUMNS",
           "connectivity_summary", "connectivity_summary_verbose", "connectivity_tbl_summary", "op_attributes",
           "attributes_summary", "attributes_summary_tbl", "export_img_classifier_to_onnx"]
