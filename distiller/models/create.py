"""``create_model``: builds a registered architecture for a dataset and places it on the right device."""
import logging
from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import nn

from ..errors import ArgumentError, InputFileError
from .registry import ModelBuilder, check_dataset, model_entry

msglogger = logging.getLogger(__name__)

CPU = -1
"""``device_ids=CPU`` (-1) keeps the model on the CPU even when CUDA is available (the app's ``--cpu``)."""


def create_model(pretrained: bool, dataset: str, arch: str, parallel: bool = True,
                 device_ids: Optional[Union[int, Sequence[int]]] = None) -> nn.Module:
    """Creates a model of architecture ``arch`` for ``dataset``.

    Args:
        pretrained: load pretrained weights (torchvision ImageNet builders only; needs network access the
            first time, after which torch.hub caches the file).
        dataset: ``'cifar10'``, ``'digits'``, ``'mnist'`` or ``'imagenet'`` (case-insensitive).
        arch: a name from ``distiller.models.ALL_MODEL_NAMES`` (or one added with ``register_model``).
        parallel: wrap the model in ``torch.nn.DataParallel`` when it runs on more than one GPU.
        device_ids: CUDA device indices to use (default: all); ``-1`` forces the CPU. Without CUDA the model
            is placed on the CPU.
    Returns:
        The model, on ``cuda:<device_ids[0]>`` (or the current CUDA device) when CUDA is available, else on
        the CPU.
    Raises:
        ArgumentError: unknown dataset or architecture (with close matches), an architecture that is not
            built for ``dataset`` (naming the datasets it supports), ``pretrained`` for an architecture
            without published weights, or device indices that do not exist.
        InputFileError: the pretrained weights could not be downloaded (no network access).

    Example:
        >>> from distiller.models import create_model, dataset_input_shape
        >>> model = create_model(False, 'digits', 'resnet20_cifar', device_ids=-1)
        >>> model(torch.zeros(dataset_input_shape('digits'))).shape
        torch.Size([1, 10])
    """
    dataset = check_dataset(dataset)
    entry = model_entry(arch)
    if dataset not in entry.datasets:
        raise ArgumentError(f"architecture '{arch}' is built for the {' and '.join(entry.datasets)} dataset"
                            f"{'s' if len(entry.datasets) > 1 else ''}, not for '{dataset}'; choose an "
                            f"architecture for '{dataset}' (see distiller.models.list_models('{dataset}'))")
    build = entry.build_pretrained if pretrained else entry.build
    if build is None:
        raise ArgumentError(f"no pretrained weights are available for '{arch}'; pretrained weights exist for "
                            "the torchvision ImageNet architectures only (drop --pretrained to train from "
                            "scratch)")
    devices = _cuda_devices(device_ids)
    model = _download_pretrained(entry.name, build) if pretrained else build()
    msglogger.info("=> created a %s%s model for the %s dataset", "pretrained " if pretrained else "", arch,
                   dataset)
    if not devices:
        return model.cpu()
    model = model.to(f"cuda:{devices[0]}")
    if parallel and len(devices) > 1:
        model = torch.nn.DataParallel(model, device_ids=devices)
    return model


def _cuda_devices(device_ids: Optional[Union[int, Sequence[int]]]) -> list[int]:
    """The CUDA device indices the model will use; empty for the CPU."""
    if device_ids == CPU or not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    if device_ids is None:
        return [torch.cuda.current_device()] + [i for i in range(count) if i != torch.cuda.current_device()]
    devices = [device_ids] if isinstance(device_ids, int) else list(device_ids)
    wrong = [d for d in devices if not isinstance(d, int) or not 0 <= d < count]
    if not devices or wrong:
        raise ArgumentError(f"device_ids {device_ids!r}: {wrong or 'empty list'} not among the {count} CUDA "
                            f"device(s) 0..{count - 1}; pass valid indices, None for all, or -1 for the CPU")
    return devices


def _download_pretrained(name: str, build: ModelBuilder) -> nn.Module:
    try:
        return build()
    except OSError as err:  # urllib's URLError/HTTPError and socket errors are all OSErrors
        raise InputFileError(
            f"could not download the pretrained weights of '{name}' ({err}); pretrained weights need "
            f"network access the first time (torch.hub then caches them in {torch.hub.get_dir()}"
            "/checkpoints), or drop --pretrained to train from scratch") from err
