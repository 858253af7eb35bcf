"""Channel pruning with feature-map reconstruction.

He, Zhang & Sun 2017, "Channel Pruning for Accelerating Very Deep Neural Networks" (arXiv:1707.06168):
choose the input channels of a layer to remove, then refit the remaining weights by least squares so
that the layer's outputs on real inputs change as little as possible. Inputs are sampled at random
positions (``positions_per_image`` per image, as in the paper) by a forward pre-hook.

Channel choice: a channel's importance is its contribution to the outputs on the sampled inputs,
``||X_c W_c^T||_F`` (a data-driven, greedy stand-in for the paper's LASSO selection); the least important
are pruned. Reconstruction: ``W' = argmin ||X_kept W'^T - X W^T||`` with ``torch.linalg.lstsq``.

Unlike the other pruners this one also rewrites the kept weights (the reconstruction is the method).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from ..norms import canonical_group_type, structure_view
from ..registry import register_pruner
from ..spec import Fraction, PositiveInt, validated
from ..utils import find_module_by_fq_name
from .base import MaskDict, NonNegativeReal, WeightNames
from .importance import Structures, owning_module_name
from .ranked import GroupDependency, RankedStructureParameterPruner

#: ``magnitude_fn(rows, dim=1)``: one value per row of the channels' view, e.g. :func:`distiller.norms.l1_norm`.
MagnitudeFn = Callable[..., torch.Tensor]


def sample_layer_inputs(module: torch.nn.Module, inputs: torch.Tensor, positions_per_image: int,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Rows of the layer's unfolded input, ``positions_per_image`` random positions per sample.

    Returns:
        ``[rows, in_channels * kh * kw]`` for a Conv2d, ``[rows, in_features]`` for a Linear layer.
    """
    x = inputs.detach()
    if isinstance(module, torch.nn.Conv2d):
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding,  # type: ignore[arg-type]
                           module.stride)  # (a string padding is refused when the hooks are installed)
        rows = patches.transpose(1, 2)                        # [N, L, C*kh*kw]
    else:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])        # [N, positions, in_features]
    count = min(rows.shape[1], positions_per_image)
    picks = torch.rand(rows.shape[:2], generator=generator, device=rows.device).argsort(dim=1)[:, :count]
    return rows.gather(1, picks.unsqueeze(-1).expand(-1, -1, rows.shape[2])).reshape(-1, rows.shape[2])


@register_pruner
class FMReconstructionChannelPruner(RankedStructureParameterPruner):
    """Prunes ``desired_sparsity`` of the input channels of each weight and reconstructs the rest.

    Args:
        name: instance name.
        group_type: ``'Channels'`` (the only structure this method prunes; Distiller's schedules name it).
        desired_sparsity: fraction of input channels to prune, in [0, 1).
        weights: Conv2d (``groups=1``, zero padding) or Linear weights.
        group_dependency, kwargs, group_size, rounding_fn: as
            :class:`~distiller.pruning.L1RankedStructureParameterPruner`.
        magnitude_fn: ranks the channels by this norm of their weights instead, e.g.
            :func:`distiller.norms.l1_norm` (``fn(rows, dim=1)``: one value per row of the channels' view);
            None (default): by their contribution to the outputs.
        ranking_noise: relative Gaussian noise added to the channel ranking.
        max_samples: the most input rows kept per layer (the newest are kept).
        positions_per_image: input positions sampled per image at each forward pass.
        model: the model (given automatically by the YAML schedule): the input hooks are installed at
            once; otherwise at the first mask.

    YAML::

        channel_reconstruction:
          class: FMReconstructionChannelPruner
          group_type: Channels
          desired_sparsity: 0.5
          weights: [conv2.weight]

    Raises:
        RuntimeError: at a mask that prunes channels before any forward pass was recorded, or with fewer
            sampled rows than kept weights per filter.
    """

    @validated
    def __init__(self, name: str, group_type: str, desired_sparsity: Fraction, weights: WeightNames,
                 group_dependency: Optional[GroupDependency] = None, kwargs: Optional[dict[str, Any]] = None,
                 magnitude_fn: Optional[MagnitudeFn] = None, group_size: PositiveInt = 1,
                 rounding_fn: Union[Callable[[float], int], str] = math.floor, ranking_noise: NonNegativeReal = 0.0,
                 max_samples: PositiveInt = 8192, positions_per_image: PositiveInt = 10,
                 model: Optional[torch.nn.Module] = None) -> None:
        if canonical_group_type(group_type) != "Channels":
            raise ArgumentError(f"{name}: feature-map reconstruction prunes input channels; group_type must be "
                                f"'Channels', got {group_type!r}", argument="group_type")
        self.magnitude_fn = magnitude_fn
        super().__init__(name, "Channels", desired_sparsity, weights, group_dependency, kwargs, ranking_noise,
                         group_size, rounding_fn, importance=self._channel_importance)
        self.max_samples = max_samples
        self.positions_per_image = positions_per_image
        self._samples: dict[str, torch.Tensor] = {}
        self._handles: Optional[list[torch.utils.hooks.RemovableHandle]] = None
        if model is not None:
            self.attach(model)

    def attach(self, model: torch.nn.Module) -> None:
        """Installs the input-sampling hooks on the layers of the targeted weights (once)."""
        if self._handles is not None:
            return
        layers: dict[str, torch.nn.Module] = {}
        for param_name, _ in self._targeted_params(model):
            module_name = owning_module_name(param_name)
            module = find_module_by_fq_name(model, module_name)
            conv_ok = (isinstance(module, torch.nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
                       and not isinstance(module.padding, str))
            if (module is None or not (conv_ok or isinstance(module, torch.nn.Linear))
                    or param_name.rsplit(".", 1)[-1] != "weight"):
                raise ArgumentError(f"{self.name}: '{param_name}' is not the weight of a Linear or Conv2d layer with "
                                    f"groups=1 and numeric zero padding (not 'same'/'valid'); feature-map "
                                    f"reconstruction cannot handle it")
            layers[module_name] = module
        self._handles = [module.register_forward_pre_hook(self._make_hook(name)) for name, module in layers.items()]

    def _make_hook(self, module_name: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            rows = sample_layer_inputs(module, inputs[0], self.positions_per_image)
            previous = self._samples.get(module_name)
            stacked = rows if previous is None else torch.cat([previous, rows.to(previous.device)])
            self._samples[module_name] = stacked[-self.max_samples:]
        return hook

    def _inputs(self, param: torch.Tensor, param_name: str) -> torch.Tensor:
        rows = self._samples.get(owning_module_name(param_name))
        if rows is None:
            raise RuntimeError(f"{self.name}: no inputs of '{param_name}' were recorded yet: feature-map "
                               f"reconstruction needs forward passes first; start the pruning policy at a "
                               f"later epoch or run some batches through the model before pruning")
        return rows.to(device=param.device, dtype=param.dtype)

    def _channel_importance(self, structures: Structures) -> torch.Tensor:
        if self.magnitude_fn is not None:
            return self.magnitude_fn(structures.rows(), dim=1)
        return self._output_contribution(structures)

    def _output_contribution(self, structures: Structures) -> torch.Tensor:
        """``||X_c W_c^T||_F`` per input channel ``c`` on the sampled inputs."""
        param = structures.param
        x = self._inputs(param, structures.param_name)
        out_ch, in_ch = param.shape[:2]
        x = x.reshape(x.shape[0], in_ch, -1)
        w = param.detach().reshape(out_ch, in_ch, -1)
        gram = torch.einsum("sck,scl->ckl", x, x)            # per-channel input Gram matrices
        return torch.einsum("ock,ckl,ocl->c", w, gram, w).clamp_min(0).sqrt()

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: torch.nn.Module, step: Optional[float] = None) -> None:
        self.attach(model)
        super().prune_to_target_sparsity(param, param_name, zeros_mask_dict, target_sparsity, model, step)
        mask = zeros_mask_dict[param_name].mask
        keep = None if mask is None else structure_view(mask, "Channels")[:, 0] > 0
        if keep is None or keep.all():
            return                       # nothing pruned, nothing to reconstruct
        with torch.no_grad():
            param.copy_(self.reconstructed_weight(param, param_name, keep))

    def reconstructed_weight(self, param: torch.Tensor, param_name: str, keep: torch.Tensor) -> torch.Tensor:
        """Least-squares refit of the kept input channels to the layer's original outputs."""
        x = self._inputs(param, param_name)
        out_ch, in_ch = param.shape[:2]
        w = param.detach().reshape(out_ch, -1)
        kept_columns = keep.repeat_interleave(w.shape[1] // in_ch)
        x_kept = x[:, kept_columns]
        if x_kept.shape[0] < x_kept.shape[1]:
            raise RuntimeError(f"{self.name}: '{param_name}' has {x_kept.shape[0]} sampled input rows for "
                               f"{x_kept.shape[1]} unknowns per filter; run more forward passes or raise "
                               f"max_samples / positions_per_image")
        solution = torch.linalg.lstsq(x_kept, x @ w.t()).solution          # [kept columns, out]
        refit = torch.zeros_like(w)
        refit[:, kept_columns] = solution.t()
        return refit.reshape(param.shape)

    def remove_hooks(self) -> None:
        """Removes the input-sampling hooks and frees the samples."""
        for handle in self._handles or ():
            handle.remove()
        self._handles, self._samples = None, {}
