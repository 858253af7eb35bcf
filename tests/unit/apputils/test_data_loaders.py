"""Data loaders: the embedded digits dataset, and cifar10 / mnist / imagenet read from small files that the
tests write in the real on-disk formats; samplers, splits and argument checks."""
import hashlib
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from distiller.apputils import data_loaders
from distiller.apputils.data_loaders import EpochSubsetSampler, load_data
from distiller.errors import ArgumentError, InputFileError

CIFAR_TRAIN_PER_BATCH, CIFAR_TEST = 4, 6


class _Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as in the official CIFAR-10 pickles (which load with
    ``encoding='latin1'`` as str and with ``encoding='bytes'`` as bytes)."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_py2_str


def write_python2_pickle(path, obj):
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A CIFAR-10 directory of 5 x 4 training and 6 test images in the official python-batch format; the
    MD5 sums torchvision checks are replaced by the fixture files' own."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name, size in [(f"data_batch_{i}", CIFAR_TRAIN_PER_BATCH) for i in range(1, 6)] + [
            ("test_batch", CIFAR_TEST)]:
        batch = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size)],
                 b"filenames": [f"img_{i}.png".encode() for i in range(size)]}
        write_python2_pickle(folder / name, batch)
        batches[name] = batch
    write_python2_pickle(folder / "batches.meta", {
        b"label_names": [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                              "horse", "ship", "truck")],
        b"num_cases_per_batch": CIFAR_TRAIN_PER_BATCH, b"num_vis": 3072})
    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in os.listdir(folder)}
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", [[n, md5[n]] for n, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[n, md5[n]] for n, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", dict(cifar.meta, md5=md5["batches.meta"]))
    return tmp_path, batches


def write_idx(path, array, magic):
    """An MNIST idx file: big-endian magic number (type 0x08 = uint8, number of dims), dims, raw bytes."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = {}
    for prefix, size in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 0x0803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 0x0801)
        data[prefix] = images, labels
    return tmp_path, data


@pytest.fixture
def imagenet_dir(tmp_path):
    rng = np.random.default_rng(2)
    for split, per_class in (("train", 5), ("val", 2)):
        for cls in ("n01440764", "n01443537"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path


def all_batches(loader):
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


# ---------------------------------------------------------------- digits

def test_digits_sizes_shapes_and_labels():
    train, valid, test, shape = load_data("digits", None, None, batch_size=64, workers=4)
    assert shape == (1, 3, 32, 32)
    assert (len(train.sampler), len(valid.sampler), len(test.sampler)) == (1293, 144, 360)
    assert len(train.sampler) + len(valid.sampler) + len(test.sampler) == 1797
    assert not set(train.sampler.indices.tolist()) & set(valid.sampler.indices.tolist())
    assert train.num_workers == 0
    images, labels = all_batches(test)
    assert images.shape == (360, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert set(labels.tolist()) == set(range(10))
    assert torch.bincount(labels).min() >= 35  # stratified: ~36 of each digit


def test_digits_are_real_upsampled_sklearn_digits():
    from sklearn.datasets import load_digits
    train_images, train_labels, test_images, test_labels = data_loaders.digits_tensors()
    assert abs(float(train_images.mean())) < 1e-4 and abs(float(train_images.std()) - 1) < 1e-3
    digits = load_digits()
    assert sorted(torch.cat([train_labels, test_labels]).tolist()) == sorted(digits.target.tolist())
    # area-averaging each 32x32 test image back to 8x8 finds its original sklearn digit, with its label
    down = F.adaptive_avg_pool2d(test_images[:, :1], 8).flatten(1).numpy()
    original = digits.data.astype(np.float64)
    corr = np.corrcoef(down, original)[:len(down), len(down):]
    best = corr.argmax(1)
    assert corr.max(1).min() > 0.9
    assert (digits.target[best] == test_labels.numpy()).all()


def test_digits_split_is_fixed_whatever_the_seed():
    first = load_data("digits", None, None, 32, 0, seed=1)
    second = load_data("digits", None, "/ignored", 32, 0, seed=2, deterministic=True)
    for a, b in zip(first[1:3], second[1:3]):
        assert torch.equal(a.sampler.indices, b.sampler.indices)
        torch.testing.assert_close(all_batches(a), all_batches(b))
    assert torch.equal(first[0].sampler.indices, second[0].sampler.indices)


def test_digits_training_order_depends_only_on_seed_and_epoch():
    def first_labels(seed, epoch, warmup=0):
        torch.manual_seed(123)
        train = load_data("digits", None, None, 64, 0, deterministic=True, seed=seed)[0]
        for _ in range(warmup):
            next(iter(train))
        train.sampler.set_epoch(epoch)
        return next(iter(train))[1]
    assert torch.equal(first_labels(0, 3), first_labels(0, 3, warmup=2))
    assert not torch.equal(first_labels(0, 3), first_labels(0, 4))
    assert not torch.equal(first_labels(0, 3), first_labels(1, 3))


def test_digits_training_images_are_shifted_by_at_most_two_pixels():
    train, valid, _, _ = load_data("digits", None, None, 16, 0, validation_split=0)
    clean = train.dataset.base.tensors[0]
    background = float(clean.min())
    torch.manual_seed(0)
    shifted_some = False
    for index in range(20):
        augmented, _ = train.dataset[index]
        padded = F.pad(clean[index], (2, 2, 2, 2), value=background)
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[:, dy:dy + 32, dx:dx + 32], augmented)]
        assert offsets, f"image {index} is not a translation of the original by <= 2 pixels"
        shifted_some |= (2, 2) not in offsets
    assert shifted_some
    assert valid is None and len(train.sampler) == 1437


def test_digits_test_only():
    train, valid, test, shape = load_data("digits", None, None, 100, 0, test_only=True)
    assert train is None and valid is None and len(test.sampler) == 360 and len(test) == 4


def test_digits_loading_is_cached():
    data_loaders.digits_tensors()
    before = data_loaders.digits_tensors.cache_info().hits
    load_data("digits", None, None, 64, 0)
    assert data_loaders.digits_tensors.cache_info().hits == before + 1


# ---------------------------------------------------------------- sampler

def test_sampler_effective_size_switches_subsets_each_epoch():
    sampler = EpochSubsetSampler(range(100, 200), fraction=0.25, shuffle=True, seed=7)
    epochs = [list(sampler) for _ in range(3)]
    assert all(len(e) == len(sampler) == 25 for e in epochs)
    assert all(set(e) <= set(range(100, 200)) and len(set(e)) == 25 for e in epochs)
    assert len({tuple(sorted(e)) for e in epochs}) == 3
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]


def test_sampler_fixed_subset_keeps_the_subset_and_sequential_keeps_order():
    fixed = EpochSubsetSampler(range(50), fraction=0.2, shuffle=True, fixed_subset=True, seed=3)
    epochs = [list(fixed) for _ in range(3)]
    assert len({tuple(sorted(e)) for e in epochs}) == 1 and len({tuple(e) for e in epochs}) > 1
    ordered = EpochSubsetSampler([9, 3, 5, 1], fraction=1.0, shuffle=False)
    assert list(ordered) == [9, 3, 5, 1] == list(ordered)
    assert len(EpochSubsetSampler(range(10), fraction=0.01)) == 1


def test_effective_sizes_and_sequential_in_load_data():
    train, valid, test, _ = load_data("digits", None, None, 50, 0, effective_train_size=0.5,
                                      effective_valid_size=0.5, effective_test_size=0.1, sequential=True)
    assert (len(train.sampler), len(valid.sampler), len(test.sampler)) == (646, 72, 36)
    assert len(train) == 13
    order = list(train.sampler)
    assert order == sorted(order)


def test_evaluation_subsets_stay_the_same_across_passes_while_training_subsets_change():
    """--etes/--vs subsets: a float and a quantized model (or two epochs) are scored on the same samples."""
    train, valid, test, _ = load_data("digits", None, None, 50, 0, effective_train_size=0.5,
                                      effective_valid_size=0.5, effective_test_size=0.1)
    assert list(test.sampler) == list(test.sampler) == list(test.sampler)
    assert list(valid.sampler) == list(valid.sampler)
    assert set(train.sampler) != set(train.sampler)


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs,expected", [
    (dict(validation_split=1.0), "a number in [0, 1)"),
    (dict(validation_split=-0.1), "a number in [0, 1)"),
    (dict(effective_train_size=0), "a number in (0, 1]"),
    (dict(effective_test_size=1.5), "a number in (0, 1]"),
    (dict(batch_size=0), "an integer > 0"),
    (dict(batch_size=8.0), "an integer > 0"),
    (dict(batch_size=True), "an integer > 0"),
    (dict(workers=-1), "an integer >= 0"),
    (dict(deterministic="yes"), "true or false"),
])
def test_bad_arguments_name_the_argument_the_expected_type_and_the_value(kwargs, expected):
    args = dict(dataset="digits", arch=None, data_dir=None, batch_size=8, workers=0) | kwargs
    (argument, value), = kwargs.items()
    with pytest.raises(ArgumentError) as info:
        load_data(**args)
    assert info.value.argument == argument
    assert str(info.value).startswith(f"load_data: argument '{argument}' expects {expected}, got {value!r}")


def test_yaml_style_numbers_are_accepted():
    _, valid, _, _ = load_data("digits", None, None, 8, 0, validation_split="1e-1")
    assert len(valid.sampler) == 144


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(ArgumentError, match=r"unknown dataset 'cifar100'.*'cifar10'"):
        load_data("cifar100", None, "/data", 8, 0)


def test_real_datasets_need_a_directory():
    with pytest.raises(ArgumentError, match="the cifar10 dataset needs a data directory"):
        load_data("cifar10", None, None, 8, 0)


def test_distiller_dataset_helpers():
    assert data_loaders.classification_dataset_str_from_arch("resnet20_cifar") == "cifar10"
    assert data_loaders.classification_dataset_str_from_arch("simplenet_mnist") == "mnist"
    assert data_loaders.classification_dataset_str_from_arch("resnet18") == "imagenet"
    assert data_loaders.classification_num_classes("imagenet") == 1000
    assert data_loaders.classification_get_input_shape("mnist") == (1, 1, 28, 28)


# ---------------------------------------------------------------- cifar10

def test_cifar10_reads_the_python_batches(cifar_dir):
    root, batches = cifar_dir
    train, valid, test, shape = load_data("cifar10", None, str(root), batch_size=4, workers=0, validation_split=0.2)
    assert shape == (1, 3, 32, 32)
    assert (len(train.sampler), len(valid.sampler), len(test.sampler)) == (16, 4, CIFAR_TEST)
    images, labels = all_batches(test)
    assert labels.tolist() == batches["test_batch"][b"labels"]
    mean = torch.tensor(data_loaders.CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(data_loaders.CIFAR10_STD).view(3, 1, 1)
    pixels = torch.round((images * std + mean) * 255).to(torch.uint8)
    expected = torch.from_numpy(batches["test_batch"][b"data"]).view(CIFAR_TEST, 3, 32, 32)
    assert torch.equal(pixels, expected)
    # validation images come from the training batches, without augmentation
    valid_images, valid_labels = all_batches(valid)
    train_data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    index = valid.sampler.indices[0]
    assert valid_labels[0] == train_labels[index]
    restored = torch.round((valid_images[0] * std + mean) * 255).to(torch.uint8)
    assert torch.equal(restored, torch.from_numpy(train_data[index]).view(3, 32, 32))
    train_images, _ = next(iter(train))
    assert train_images.shape == (4, 3, 32, 32)


def test_cifar10_deterministic_augmentation_with_workers(cifar_dir):
    root, _ = cifar_dir

    def first_batch():
        train = load_data("cifar10", None, str(root), 8, workers=1, deterministic=True, seed=5)[0]
        return next(iter(train))
    (a, la), (b, lb) = first_batch(), first_batch()
    assert torch.equal(la, lb) and torch.equal(a, b)


def test_cifar10_missing_files_are_named(cifar_dir, tmp_path):
    root, _ = cifar_dir
    with pytest.raises(InputFileError, match=r"cifar-10-batches-py/data_batch_1.*cifar-10-python.tar.gz"):
        load_data("cifar10", None, str(tmp_path / "nowhere"), 8, 0)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(InputFileError, match=r"missing \S*data_batch_3\. Download"):
        load_data("cifar10", None, str(root), 8, 0)


def test_cifar10_corrupted_files_fail_the_integrity_check(cifar_dir):
    root, _ = cifar_dir
    with open(root / "cifar-10-batches-py" / "test_batch", "ab") as f:
        f.write(b"garbage")
    with pytest.raises(InputFileError, match="failed torchvision's integrity"):
        load_data("cifar10", None, str(root), 8, 0, test_only=True)


# ---------------------------------------------------------------- mnist

def test_mnist_reads_idx_files(mnist_dir):
    root, data = mnist_dir
    train, valid, test, shape = load_data("mnist", None, str(root), batch_size=8, workers=0, validation_split=0.25)
    assert shape == (1, 1, 28, 28)
    assert (len(train.sampler), len(valid.sampler), len(test.sampler)) == (15, 5, 10)
    images, labels = all_batches(test)
    assert images.shape == (10, 1, 28, 28)
    assert labels.tolist() == data["t10k"][1].tolist()
    pixels = torch.round((images[:, 0] * data_loaders.MNIST_STD[0] + data_loaders.MNIST_MEAN[0]) * 255)
    assert torch.equal(pixels.to(torch.uint8), torch.from_numpy(data["t10k"][0]))


def test_mnist_missing_or_compressed_files(mnist_dir):
    root, _ = mnist_dir
    raw = root / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte").rename(raw / "train-images-idx3-ubyte.gz")
    with pytest.raises(InputFileError, match=r"missing \S*train-images-idx3-ubyte\. Decompress"):
        load_data("mnist", None, str(root), 8, 0)
    with pytest.raises(InputFileError, match=r"MNIST/raw/t10k-images-idx3-ubyte"):
        load_data("mnist", None, str(root / "empty"), 8, 0)


def test_mnist_corrupted_idx_file(mnist_dir):
    root, _ = mnist_dir
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(InputFileError, match="not valid idx files"):
        load_data("mnist", None, str(root), 8, 0, test_only=True)


# ---------------------------------------------------------------- imagenet

def test_imagenet_reads_image_folders(imagenet_dir):
    train, valid, test, shape = load_data("imagenet", None, str(imagenet_dir), batch_size=4, workers=0,
                                          validation_split=0.2)
    assert shape == (1, 3, 224, 224)
    assert (len(train.sampler), len(valid.sampler), len(test.sampler)) == (8, 2, 4)
    images, labels = all_batches(test)
    assert images.shape == (4, 3, 224, 224) and labels.tolist() == [0, 0, 1, 1]
    assert next(iter(train))[0].shape == (4, 3, 224, 224)


def test_inception_architectures_read_imagenet_at_299(imagenet_dir):
    train, _, test, shape = load_data("imagenet", "inception_v3", str(imagenet_dir), batch_size=4, workers=0,
                                      validation_split=0.2)
    assert shape == (1, 3, 299, 299)
    assert all_batches(test)[0].shape == (4, 3, 299, 299) and next(iter(train))[0].shape == (4, 3, 299, 299)
    assert load_data("imagenet", "resnet18", str(imagenet_dir), 4, 0, test_only=True)[3] == (1, 3, 224, 224)
    assert load_data("digits", "inception_v3", None, 4, 0, test_only=True)[3] == (1, 3, 32, 32)  # ImageNet only


def test_imagenet_missing_directory(imagenet_dir):
    import shutil
    shutil.rmtree(imagenet_dir / "val")
    with pytest.raises(InputFileError, match=r"missing directory \S*val\. Expected train/<class>"):
        load_data("imagenet", None, str(imagenet_dir), 4, 0)


def test_imagenet_folders_without_images(imagenet_dir):
    for image in (imagenet_dir / "val").rglob("*.png"):
        image.unlink()
    with pytest.raises(InputFileError, match=r"has no images in the ImageFolder layout"):
        load_data("imagenet", None, str(imagenet_dir), 4, 0, test_only=True)
