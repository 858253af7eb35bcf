"""torchvision's pretrained ImageNet weights for models that keep torchvision's parameter names."""
from typing import Callable

import torch.nn as nn
import torchvision


def with_torchvision_weights(build: Callable[[], nn.Module], name: str) -> nn.Module:
    """``build()`` loaded with torchvision's default ImageNet weights of architecture ``name`` (downloaded on
    first use, then cached by torch.hub; a failed download raises an ``OSError``)."""
    model = build()
    model.load_state_dict(torchvision.models.get_model_weights(name).DEFAULT.get_state_dict(progress=True))
    return model
