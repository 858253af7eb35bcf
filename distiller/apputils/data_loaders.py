"""Data loaders for the image-classification datasets of the sample applications.

``load_data`` returns ``(train_loader, valid_loader, test_loader, input_shape)`` for:

* ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 grey images, no download), resized
  to 32x32 and replicated to 3 channels, so every CIFAR-10 architecture runs on it unchanged. A fixed
  stratified split gives 1,437 training and 360 test images; ``data_dir`` is ignored.
* ``cifar10``: the CIFAR-10 python batches (``<data_dir>/cifar-10-batches-py/``), read by torchvision.
* ``mnist``: torchvision's MNIST layout (``<data_dir>/MNIST/raw/*-ubyte``).
* ``imagenet``: ``<data_dir>/train/`` and ``<data_dir>/val/`` in ``torchvision.datasets.ImageFolder`` layout.

Nothing is downloaded: a missing file is reported with the path that was expected and where to get it.

The validation set is carved out of the training set and uses the evaluation transforms (no augmentation).
Every loader samples with an ``EpochSubsetSampler``, whose order in epoch ``e`` depends only on
``(seed, e)``: a training loop that resumes at epoch ``e`` calls ``loader.sampler.set_epoch(e)`` to see the
same batches as the interrupted run.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated, Any, NamedTuple, Optional, Protocol, Union

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from ..errors import ArgumentError, InputFileError
from ..models.registry import check_dataset, dataset_input_shape, dataset_num_classes, datasets_of_arch
from ..spec import Fraction, NonNegativeInt, PositiveInt, Range, validated

msglogger = logging.getLogger(__name__)

__all__ = ["EpochSubsetSampler", "load_data", "classification_dataset_str_from_arch",
           "classification_get_input_shape", "classification_num_classes"]

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
MNIST_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte")
MNIST_PROCESSED_FILES = ("training.pt", "test.pt")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_MAX_SHIFT = 2
#: ImageNet image side of Inception networks (evaluation resizes to 342 first, keeping 224/256's ratio).
INCEPTION_CROP = 299

#: The portion of a set sampled per epoch: ``0 < x <= 1``.
_SampledFraction = Annotated[float, Range(0, 1, lo_open=True)]


@validated
def load_data(dataset: str, arch: Optional[str], data_dir: Optional[Union[str, os.PathLike[str]]],
              batch_size: PositiveInt, workers: NonNegativeInt, validation_split: Fraction = 0.1,
              deterministic: bool = False, effective_train_size: _SampledFraction = 1.,
              effective_valid_size: _SampledFraction = 1., effective_test_size: _SampledFraction = 1.,
              fixed_subset: bool = False, sequential: bool = False, test_only: bool = False,
              seed: Optional[int] = None
              ) -> tuple[Optional[DataLoader], Optional[DataLoader], DataLoader, tuple[int, int, int, int]]:
    """Creates the training, validation and test loaders of ``dataset``.

    Args:
        dataset: ``'digits'``, ``'cifar10'``, ``'mnist'`` or ``'imagenet'`` (case-insensitive).
        arch: the architecture the data is for, or None. It matters for ImageNet only: Inception networks
            (``'inception_v3'``...) take 299x299 images (resized to 342 for evaluation), the others 224x224.
        data_dir: the dataset's directory (ignored for ``digits``; may be None there).
        batch_size: images per batch.
        workers: number of loader worker processes (``digits`` lives in memory and always uses 0).
        validation_split: fraction of the training set held out for validation, in [0, 1); with 0 the
            validation loader is None. The split is fixed for ``digits``, and a function of ``seed`` otherwise.
        deterministic: seed the loader workers from ``(seed, epoch)`` (restarted every epoch), so that
            random augmentation in workers repeats exactly, in resumed runs too.
        effective_train_size, effective_valid_size, effective_test_size: fraction in (0, 1] of each set
            sampled per epoch (training: a new random subset each epoch unless ``fixed_subset``; validation
            and test: one subset for the whole run).
        fixed_subset: sample the same subset in every epoch.
        sequential: iterate over the training set in index order instead of shuffling.
        test_only: build only the test loader (the others are None).
        seed: seed of the validation split, the shuffling and the subsets (default: ``torch.initial_seed()``,
            i.e. the seed given to ``torch.manual_seed`` / ``distiller.utils.set_seed``).
    Returns:
        ``(train_loader, valid_loader, test_loader, input_shape)``; ``input_shape`` is a batch-of-one shape
        such as ``(1, 3, 32, 32)``.
    Raises:
        ArgumentError: unknown dataset (with close matches) or an argument out of range.
        InputFileError: dataset files missing (naming the expected paths and how to get them), or present
            but unreadable or corrupted.

    Example:
        >>> train, valid, test, shape = load_data('digits', None, None, batch_size=64, workers=0)
        >>> len(train.sampler), len(valid.sampler), len(test.sampler), shape
        (1293, 144, 360, (1, 3, 32, 32))
    """
    dataset = check_dataset(dataset)
    if dataset != "digits" and data_dir is None:
        raise ArgumentError(f"the {dataset} dataset needs a data directory (data_dir is None); only 'digits' is "
                            "embedded in distiller")
    if seed is None:
        seed = torch.initial_seed()
    input_shape = _input_shape(dataset, arch)
    if dataset == "imagenet":
        assert data_dir is not None  # refused above for every dataset but digits
        sources = _imagenet(data_dir, test_only, crop=input_shape[-1])
    else:
        sources = _SOURCES[dataset](data_dir, test_only)
    if sources.in_memory:
        workers = 0  # worker processes would only add start-up time
    make_loader = functools.partial(_make_loader, batch_size=batch_size, workers=workers, seed=seed,
                                    deterministic=deterministic)
    # Evaluation sets keep one subset for the whole run: scores compared across epochs, or between a float
    # and a quantized model, must come from the same samples.
    test_loader = make_loader(sources.test, range(len(sources.test)), effective_test_size, shuffle=False,
                              fixed_subset=True)
    if sources.train is None or sources.valid is None:  # test_only: the training set was not read
        return None, None, test_loader, input_shape
    split_seed = seed % 2 ** 32 if sources.split_seed is None else sources.split_seed
    train_indices, valid_indices = _split_validation(len(sources.train), validation_split, split_seed,
                                                     sources.stratify)
    train_loader = make_loader(sources.train, train_indices, effective_train_size, shuffle=not sequential,
                               fixed_subset=fixed_subset)
    valid_loader = None
    if len(valid_indices):
        valid_loader = make_loader(sources.valid, valid_indices, effective_valid_size, shuffle=False,
                                   fixed_subset=True)
    msglogger.debug("%s: %d training, %d validation, %d test images", dataset, len(train_indices),
                    len(valid_indices), len(sources.test))
    return train_loader, valid_loader, test_loader, input_shape


class EpochSubsetSampler(Sampler):
    """Samples a fraction of a fixed list of dataset indices; epoch ``e``'s samples and order depend only on
    ``(seed, e)``, like ``DistributedSampler``.

    Each ``iter()`` uses the current epoch and then advances it by one; ``set_epoch(e)`` jumps to epoch
    ``e`` (call it at the start of every epoch of a resumable training loop).

    Args:
        indices: the dataset indices to draw from.
        fraction: portion of ``indices`` drawn per epoch, in (0, 1].
        shuffle: random order; otherwise ascending index order.
        fixed_subset: draw the same subset in every epoch (only the order changes).
        seed: an integer seed.
        worker_generator: the ``generator`` of the DataLoader using this sampler, if any: it is reseeded from
            ``(seed, e)`` before epoch ``e``, so the loader's worker processes (which it seeds) draw epoch
            ``e``'s random augmentations however many epochs came before (e.g. in a resumed run).
    """

    def __init__(self, indices: Iterable[int], fraction: float = 1.0, shuffle: bool = True, fixed_subset: bool = False,
                 seed: int = 0, worker_generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.indices = torch.as_tensor(list(indices), dtype=torch.int64)
        self.num_samples = max(1, int(len(self.indices) * fraction)) if len(self.indices) else 0
        self.shuffle, self.fixed_subset, self.seed = shuffle, fixed_subset, int(seed)
        self.worker_generator = worker_generator
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration produce epoch ``epoch``'s samples."""
        self.epoch = int(epoch)
        if self.worker_generator is not None:  # a DataLoader draws its workers' base seed when iterated
            self.worker_generator.manual_seed(_generator(self.seed, 2, self.epoch).initial_seed())

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.set_epoch(epoch + 1)
        chosen = self.indices
        if self.num_samples < len(self.indices):
            subset_generator = _generator(self.seed, 1, 0 if self.fixed_subset else epoch)
            positions = torch.randperm(len(self.indices), generator=subset_generator)[:self.num_samples]
            chosen = self.indices[positions.sort().values]
        if self.shuffle:
            chosen = chosen[torch.randperm(len(chosen), generator=_generator(self.seed, 0, epoch))]
        return iter(chosen.tolist())


def _generator(*entropy: int) -> torch.Generator:
    """A torch.Generator seeded from non-negative integers, mixed by NumPy's SeedSequence."""
    state = np.random.SeedSequence([abs(int(e)) for e in entropy]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _split_validation(size: int, validation_split: float, random_state: int, stratify: Optional[np.ndarray] = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (train_indices, valid_indices) of a training set of ``size`` images."""
    indices = np.arange(size)
    if validation_split == 0:
        return indices, indices[:0]
    train, valid = train_test_split(indices, test_size=validation_split, random_state=random_state,
                                    stratify=stratify)
    return np.sort(train), np.sort(valid)


def _make_loader(dataset: _SizedDataset, indices: Iterable[int], fraction: float, shuffle: bool, *, batch_size: int,
                 workers: int, seed: int, deterministic: bool, fixed_subset: bool) -> DataLoader:
    # Deterministic loaders start their workers every epoch, seeded from (seed, epoch) through the sampler:
    # persistent workers would carry their random state over from the epochs before.
    generator = torch.Generator() if deterministic else None
    sampler = EpochSubsetSampler(indices, fraction, shuffle, fixed_subset, seed, worker_generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0 and not deterministic,
                      worker_init_fn=_seed_worker if deterministic else None, generator=generator)


def _seed_worker(worker_id: int) -> None:
    """Seeds NumPy and ``random`` in a loader worker from the seed torch gave it (PyTorch's recipe)."""
    worker_seed = torch.initial_seed() % 2 ** 32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class _IndexedImages(Protocol):
    """A map-style dataset of ``(image, label)`` pairs with a length (torchvision's, TensorDataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


# The datasets the readers return: all have a length.
_SizedDataset = Union["_Transformed", TensorDataset]


class _Sources(NamedTuple):
    """A dataset's training set with augmentation (``train``), the same images with evaluation transforms
    (``valid``) and the test set; the labels to stratify the validation split by and the split's fixed seed
    (None: no stratification / the caller's seed); ``in_memory``: loading needs no worker processes."""
    train: Optional[_SizedDataset]
    valid: Optional[_SizedDataset]
    test: _SizedDataset
    stratify: Optional[np.ndarray] = None
    split_seed: Optional[int] = None
    in_memory: bool = False


class _Transformed(Dataset):
    """A view of ``base`` whose images pass through ``transform``."""

    def __init__(self, base: _IndexedImages, transform: Callable[[Any], Any]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, label = self.base[index]
        return self.transform(image), label


def _sources_from(base_train: Optional[_IndexedImages], base_test: _IndexedImages,
                  train_transform: Callable[[Any], Any], eval_transform: Callable[[Any], Any]) -> _Sources:
    test = _Transformed(base_test, eval_transform)
    if base_train is None:
        return _Sources(None, None, test)
    return _Sources(_Transformed(base_train, train_transform), _Transformed(base_train, eval_transform), test)


def _missing(paths: Sequence[str]) -> list[str]:
    return [path for path in paths if not os.path.isfile(path)]


def _cifar10(data_dir: Union[str, os.PathLike[str]], test_only: bool) -> _Sources:
    folder = os.path.join(data_dir, torchvision.datasets.CIFAR10.base_folder)
    missing = _missing([os.path.join(folder, name) for name in CIFAR10_FILES])
    if missing:
        raise InputFileError(
            f"CIFAR-10 not found in '{data_dir}': missing {', '.join(missing)}. Download "
            f"{torchvision.datasets.CIFAR10.url} and extract it into '{data_dir}' (it creates "
            f"{torchvision.datasets.CIFAR10.base_folder}/), or use the embedded 'digits' dataset")
    try:
        base_test = torchvision.datasets.CIFAR10(data_dir, train=False, download=False)
        base_train = None if test_only else torchvision.datasets.CIFAR10(data_dir, train=True, download=False)
    except RuntimeError as err:
        raise InputFileError(f"the CIFAR-10 files in '{folder}' failed torchvision's integrity (MD5) check "
                             f"({err}); download and extract {torchvision.datasets.CIFAR10.url} again") from err
    normalize = T.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    return _sources_from(base_train, base_test,
                         T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    normalize]),
                         T.Compose([T.ToTensor(), normalize]))


def _mnist(data_dir: Union[str, os.PathLike[str]], test_only: bool) -> _Sources:
    raw = [os.path.join(data_dir, "MNIST", "raw", name) for name in MNIST_RAW_FILES]
    processed = [os.path.join(data_dir, "MNIST", "processed", name) for name in MNIST_PROCESSED_FILES]
    missing = _missing(raw)
    if missing and _missing(processed):
        gzipped = [path for path in missing if os.path.isfile(path + ".gz")]
        raise InputFileError(
            f"MNIST not found in '{data_dir}': missing {', '.join(missing)}. "
            + (f"Decompress {', '.join(p + '.gz' for p in gzipped)} (gunzip). " if gzipped else
               "Download the four idx files of http://yann.lecun.com/exdb/mnist/ (or torchvision's mirrors) "
               f"and decompress them into '{os.path.join(data_dir, 'MNIST', 'raw')}'. ")
            + "Or use the embedded 'digits' dataset")
    try:
        base_test = torchvision.datasets.MNIST(data_dir, train=False, download=False)
        base_train = None if test_only else torchvision.datasets.MNIST(data_dir, train=True, download=False)
    except (RuntimeError, ValueError, TypeError, AssertionError) as err:
        raise InputFileError(f"the MNIST files in '{data_dir}/MNIST' are not valid idx files ({err!r}); "
                             "download them again") from err
    transform = T.Compose([T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])
    return _sources_from(base_train, base_test, transform, transform)


def _input_shape(dataset: str, arch: Optional[str]) -> tuple[int, int, int, int]:
    """The batch-of-one input shape for ``arch`` on ``dataset``: the dataset's, except Inception networks on
    ImageNet, which take 299x299 images (Szegedy et al. 2016, "Rethinking the Inception Architecture")."""
    if dataset == "imagenet" and arch is not None and "inception" in str(arch).lower():
        return (1, 3, INCEPTION_CROP, INCEPTION_CROP)
    return dataset_input_shape(dataset)


def _imagenet(data_dir: Union[str, os.PathLike[str]], test_only: bool, crop: int = 224) -> _Sources:
    folders = {split: os.path.join(data_dir, split) for split in (("val",) if test_only else ("train", "val"))}
    missing = [path for path in folders.values() if not os.path.isdir(path)]
    if missing:
        raise InputFileError(
            f"ImageNet not found in '{data_dir}': missing directory {', '.join(missing)}. Expected "
            "train/<class>/*.JPEG and val/<class>/*.JPEG (torchvision ImageFolder layout; the official "
            "validation images must be sorted into class folders)")
    try:
        base = {split: torchvision.datasets.ImageFolder(path) for split, path in folders.items()}
    except FileNotFoundError as err:  # ImageFolder: no class folder, or no image in them
        raise InputFileError(f"ImageNet in '{data_dir}' has no images in the ImageFolder layout ({err}); "
                             "expected train/<class>/*.JPEG and val/<class>/*.JPEG") from err
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return _sources_from(base.get("train"), base["val"],
                         T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
                                    normalize]),
                         T.Compose([T.Resize(round(crop * 256 / 224)), T.CenterCrop(crop), T.ToTensor(),
                                    normalize]))


@functools.lru_cache(maxsize=1)
def digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as normalised 3x32x32 float tensors, split 80/20 (stratified, fixed seed).

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``; the images are bilinearly upsampled from
        8x8, replicated to 3 channels and normalised with the training set's mean and standard deviation.
    """
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION,
                                   random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
    mean, std = images[train].mean(), images[train].std()
    images = ((images - mean) / std).expand(-1, 3, -1, -1).contiguous()
    return images[train], labels[train], images[test], labels[test]


def _digits(data_dir: object, test_only: bool) -> _Sources:
    train_images, train_labels, test_images, test_labels = digits_tensors()
    test = TensorDataset(test_images, test_labels)
    if test_only:
        return _Sources(None, None, test, in_memory=True)
    train = TensorDataset(train_images, train_labels)
    background = float(train_images.min())  # the normalised value of a blank (0) pixel
    shift = T.RandomCrop(32, padding=DIGITS_MAX_SHIFT, fill=background)
    return _Sources(_Transformed(train, shift), train, test, stratify=train_labels.numpy(),
                    split_seed=DIGITS_SPLIT_SEED, in_memory=True)


#: dataset -> reader of its sets from ``(data_dir, test_only)`` (data_dir is None only for digits)
_SOURCES: dict[str, Callable[[Any, bool], _Sources]] = {"cifar10": _cifar10, "digits": _digits,
                                                        "imagenet": _imagenet, "mnist": _mnist}


def classification_dataset_str_from_arch(arch: str) -> str:
    """The (first) dataset that architecture ``arch`` is built for (Distiller's name)."""
    return datasets_of_arch(arch)[0]


classification_num_classes = dataset_num_classes
classification_get_input_shape = dataset_input_shape


def first_batches(loader: Iterable[Any], portion: float, total: Optional[int] = None) -> list[Any]:
    """The first ``portion`` of ``loader``'s batches (at least one), read once into memory.

    Args:
        total: the number of batches the portion is of (default ``len(loader)``; a process's shard of the data
            may hold a batch fewer than the whole data has).
    """
    count = max(1, math.ceil(portion * (len(loader) if total is None else total)))  # type: ignore[arg-type]
    return list(itertools.islice(iter(loader), count))
