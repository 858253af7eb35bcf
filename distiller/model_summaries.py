"""Distiller's module path for model summaries; they now live in :mod:`distiller.summaries`."""
from .summaries import (attributes_summary, attributes_summary_tbl, connectivity_summary,
                        connectivity_summary_verbose, connectivity_tbl_summary, export_img_classifier_to_onnx,
                        masks_sparsity_summary, masks_sparsity_tbl_summary, model_performance_summary,
                        model_performance_tbl_summary, model_summary, weights_sparsity_summary,
                        weights_sparsity_tbl_summary)

__all__ = ["model_summary", "weights_sparsity_summary", "weights_sparsity_tbl_summary", "masks_sparsity_summary",
           "masks_sparsity_tbl_summary", "model_performance_summary", "model_performance_tbl_summary",
           "connectivity_summary", "connectivity_summary_verbose", "connectivity_tbl_summary", "attributes_summary",
           "attributes_summary_tbl", "export_img_classifier_to_onnx"]
