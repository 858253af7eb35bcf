"""Distiller's module path for model summaries; they now live in :mod:`distiller.summaries` (graph drawings in
:mod:`distiller.graph.drawing`)."""
from .graph.drawing import create_png, create_pydot_graph, draw_img_classifier_to_file, draw_model_to_file
from .summaries import (attributes_summary, attributes_summary_tbl, connectivity_summary,
                        connectivity_summary_verbose, connectivity_tbl_summary, export_img_classifier_to_onnx,
                        masks_sparsity_summary, masks_sparsity_tbl_summary, model_performance_summary,
                        model_performance_tbl_summary, model_summary, weights_sparsity_summary,
                        weights_sparsity_tbl_summary)

__all__ = ["model_summary", "weights_sparsity_summary", "weights_sparsity_tbl_summary", "masks_sparsity_summary",
           "masks_sparsity_tbl_summary", "model_performance_summary", "model_performance_tbl_summary",
           "connectivity_summary", "connectivity_summary_verbose", "connectivity_tbl_summary", "attributes_summary",
           "attributes_summary_tbl", "export_img_classifier_to_onnx", "create_pydot_graph", "create_png",
           "draw_model_to_file", "draw_img_classifier_to_file"]
