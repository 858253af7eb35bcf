"""Shared fixtures: tiny data and models (tests must each run well under a second on CPU)."""
import pytest
import torch

from distiller.testing import TinyCNN

# Tests use tiny tensors: one intra-op thread each is much faster than oversubscribing the cores that
# pytest-xdist workers already share.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_torch_determinism():
    """``--det`` (set_deterministic) switches torch to strict deterministic algorithms process-wide: switch
    back after every test, so no test changes the settings the next one runs under."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture
def onnx_export_calls(monkeypatch):
    """Records the ``dynamo`` argument of every ``torch.onnx.export`` call the test makes (the export runs)."""
    calls = []
    original_export = torch.onnx.export

    def recording_export(*args, **kwargs):
        calls.append(kwargs.get("dynamo"))
        return original_export(*args, **kwargs)
    monkeypatch.setattr(torch.onnx, "export", recording_export)
    return calls


@pytest.fixture
def batches():
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(3)]


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return TinyCNN()
