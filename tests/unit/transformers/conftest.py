import pytest
import torch

from distiller.testing import TinyTransformer
from distiller.transformers import convert_attention


@pytest.fixture
def tiny_transformer():
    """A seeded TinyTransformer (dim 8, 4 heads of 2, FFN 16, 2 layers) with DistillerMultiheadAttention."""
    torch.manual_seed(0)
    return convert_attention(TinyTransformer())


@pytest.fixture
def images():
    return torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
