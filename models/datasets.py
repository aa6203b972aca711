"""Input geometry of each supported dataset, scikit-learn's 8x8 digits and mnist1d as the built-in offline datasets,
and CIFAR-10 / SVHN read from their official files without torchvision.

`DATASET_GEOMETRY` is the one place that says which image size, patch size, input channels and classes a dataset
implies; models, export and builds read it from here. mnist1d (the `mnist1d` package's `make_dataset`, generated
from its templates in code, never downloaded) is 1-D: signals [N, 1, 40], cut into 8 tokens of 5 samples.
`load_dataset(name, data_dir, download)` returns the splits as `ImageSplits`: CIFAR-10 from the python pickle
batches in `<data_dir>/cifar-10-batches-py/`, SVHN from `<data_dir>/{train,test}_32x32.mat` (torchvision's
layouts, so an existing `~/icml_data` works as it is), with the reference normalisation and, for training batches,
the augmentation of `models.augmentation`.
"""

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psa_finn.models.augmentation import augment_batch


@dataclass(frozen=True)
class DatasetGeometry:
    """Input and patch geometry of a dataset, as ResMLP keyword arguments.

    `spatial_dims` 2: images [Cin, S, S] in P x P patches; 1: signals [Cin, S] in runs of P samples (`img_size` is
    then the signal length).
    """

    img_size: int
    patch_size: int
    in_channels: int
    num_classes: int
    spatial_dims: int = 2

    @property
    def num_tokens(self) -> int:
        return (self.img_size // self.patch_size) ** self.spatial_dims

    @property
    def patch_dim(self) -> int:
        return self.patch_size ** self.spatial_dims * self.in_channels

    @property
    def input_shape(self) -> tuple:
        """One raw input without the batch axis: (Cin, S, S) or (Cin, S)."""
        return (self.in_channels,) + (self.img_size,) * self.spatial_dims

    def model_kwargs(self) -> dict:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_channels=self.in_channels,
                    num_classes=self.num_classes, spatial_dims=self.spatial_dims)


DATASET_GEOMETRY = {
    "cifar10": DatasetGeometry(img_size=32, patch_size=4, in_channels=3, num_classes=10),
    "svhn": DatasetGeometry(img_size=32, patch_size=4, in_channels=3, num_classes=10),
    "digits": DatasetGeometry(img_size=8, patch_size=2, in_channels=1, num_classes=10),
    # 8 tokens (a power of two: the exported token mean is then exact in float32) of 5 samples each.
    "mnist1d": DatasetGeometry(img_size=40, patch_size=5, in_channels=1, num_classes=10, spatial_dims=1),
}
OFFLINE_DATASETS = ("digits", "mnist1d")

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 2023


def load_digits_split():
    """scikit-learn's 8x8 digits with a fixed stratified split, normalised by the train split's mean and std.

    Returns (x_train, y_train, x_test, y_test): float32 tensors [N, 1, 8, 8] and int64 labels [N].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=DIGITS_TEST_FRACTION,
                                              random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def to_tensors(x, y):
        return torch.from_numpy((x - mean) / std)[:, None], torch.from_numpy(y.astype(np.int64))

    return (*to_tensors(x_tr, y_tr), *to_tensors(x_te, y_te))


def load_mnist1d_split():
    """mnist1d generated in code by the `mnist1d` package (`make_dataset` with its default arguments: 4000 train and
    1000 test signals of length 40, seed 42, already standardised); its download path is never used.

    Returns (x_train, y_train, x_test, y_test): float32 tensors [N, 1, 40] and int64 labels [N]. The global numpy
    and `random` states, which `make_dataset` reseeds, are restored afterwards.
    """
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise ImportError(f"--dataset mnist1d needs the mnist1d package ({err}); install it with "
                          f"`python -m pip install mnist1d` or rerun scripts/setup.sh") from err
    numpy_state, random_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(random_state)

    def to_tensors(x, y):
        return torch.from_numpy(np.asarray(x, dtype=np.float32))[:, None], torch.from_numpy(np.asarray(y, np.int64))

    return (*to_tensors(data["x"], data["y"]), *to_tensors(data["x_test"], data["y_test"]))


OFFLINE_LOADERS = {"digits": load_digits_split, "mnist1d": load_mnist1d_split}

DEFAULT_DATA_DIR = "~/icml_data"
IMAGE_DATASETS = ("cifar10", "svhn")

# Normalisation constants of the reference scripts (cifar10_main.py, svhn_main.py).
CHANNEL_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": ((0.4376821, 0.4437697, 0.47280442), (0.19803012, 0.20101562, 0.19703614)),
}


@dataclass(frozen=True)
class DownloadFile:
    """One official archive: where it comes from, its md5 and where it lands below the data folder."""

    url: str
    md5: str
    filename: str


DOWNLOADS = {
    "cifar10": (DownloadFile("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                             "c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz"),),
    "svhn": (DownloadFile("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                          "e26dedcc434d2e4c54c9b2d4a06d8373", "train_32x32.mat"),
             DownloadFile("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                          "eb5a983be6a315427106f1b164d9cef3", "test_32x32.mat")),
}

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing from the data folder; the message says how to get them."""


def _required_files(name: str, root: Path) -> list:
    if name == "cifar10":
        return [root / CIFAR10_FOLDER / f for f in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)]
    return [root / f.filename for f in DOWNLOADS["svhn"]]


def _check_present(name: str, root: Path) -> None:
    missing = [p for p in _required_files(name, root) if not p.is_file()]
    if missing:
        urls = ", ".join(f.url for f in DOWNLOADS[name])
        layout = (f"{root / CIFAR10_FOLDER}/{{data_batch_1..5,test_batch}} (the python version, unpacked)"
                  if name == "cifar10" else f"{root}/{{train_32x32.mat,test_32x32.mat}}")
        raise DatasetNotFoundError(
            f"{name} not found: missing {missing[0]}. Expected {layout}. Fetch it with --download "
            f"(from {urls}), or copy the files there yourself, or pass --data-dir to another folder; "
            f"--dataset digits or mnist1d needs no download.")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(item: DownloadFile, target: Path) -> None:
    """Download `item` to `target` through a temp file, checking its md5 before the rename."""
    import urllib.request

    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        print(f"downloading {item.url} -> {target}")
        urllib.request.urlretrieve(item.url, part)
        if _md5(Path(part)) != item.md5:
            raise OSError(f"md5 mismatch for {item.url} (got {_md5(Path(part))}, expected {item.md5}); "
                          f"try again or fetch the file by hand into {target.parent}")
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def download_dataset(name: str, data_dir=DEFAULT_DATA_DIR) -> Path:
    """Fetch the official files of `name` into `data_dir` (urllib, md5-checked); CIFAR-10 is unpacked atomically."""
    import tarfile

    root = Path(data_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for item in DOWNLOADS[name]:
        target = root / item.filename
        if name == "cifar10" and (root / CIFAR10_FOLDER).is_dir():
            continue
        if not (target.is_file() and _md5(target) == item.md5):
            _fetch(item, target)
        if name == "cifar10":
            with tempfile.TemporaryDirectory(dir=root) as unpack:
                with tarfile.open(target, "r:gz") as tar:
                    tar.extractall(unpack, filter="data")
                os.replace(Path(unpack) / CIFAR10_FOLDER, root / CIFAR10_FOLDER)
    return root


def _load_cifar10_arrays(root: Path):
    def read(batch):
        with open(root / CIFAR10_FOLDER / batch, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        return (np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
                np.asarray(entry[b"labels"], dtype=np.int64))

    train = [read(b) for b in CIFAR10_TRAIN_BATCHES]
    x_te, y_te = read(CIFAR10_TEST_BATCH)
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_te, y_te


def _load_svhn_arrays(root: Path):
    from scipy.io import loadmat

    def read(filename):
        mat = loadmat(root / filename)
        labels = mat["y"].astype(np.int64).reshape(-1)
        return np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)), np.where(labels == 10, 0, labels)

    return (*read("train_32x32.mat"), *read("test_32x32.mat"))


class ImageSplits:
    """A dataset's train and test split held in memory, batched, normalised and (train only) augmented in torch.

    `x_*` are uint8 images [N, C, H, W] (CIFAR-10, SVHN) or already normalised floats (digits [N, 1, 8, 8],
    mnist1d signals [N, 1, 40]; `mean`/`std` None). Training batches are shuffled and augmented from a caller-given
    generator and drop the last partial batch, as the reference loaders; test batches come in order.
    """

    def __init__(self, name, x_train, y_train, x_test, y_test, mean=None, std=None, augment=False):
        self.name = name
        self.geometry = DATASET_GEOMETRY[name]
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)[None, :, None, None]
        self.augment = augment

    def _to_input(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        if self.mean is None:
            return x
        x = x.float() / 255.0
        if generator is not None and self.augment:
            x = augment_batch(x, generator)
        return (x - self.mean) / self.std

    def num_train_batches(self, batch_size: int) -> int:
        return len(self.y_train) // batch_size

    def train_batches(self, batch_size: int, generator: torch.Generator):
        """Yield (inputs, labels) over a shuffled epoch, augmented, without the last partial batch."""
        order = torch.randperm(len(self.y_train), generator=generator)
        for start in range(0, self.num_train_batches(batch_size) * batch_size, batch_size):
            index = order[start:start + batch_size]
            yield self._to_input(self.x_train[index], generator), self.y_train[index]

    def calibration_batches(self, batch_size: int, count: int) -> list:
        """The first `count` training batches in order, normalised but not augmented (quantizer calibration)."""
        return [self._to_input(self.x_train[start:start + batch_size])
                for start in range(0, min(count * batch_size, len(self.y_train)), batch_size)]

    def test_tensors(self) -> tuple:
        """(inputs, labels) of the whole test split as two tensors, in order (what a QONNX model is scored on)."""
        return self._to_input(self.x_test), self.y_test

    def test_batches(self, batch_size: int):
        """Yield (inputs, labels) over the whole test split in order."""
        for start in range(0, len(self.y_test), batch_size):
            yield self._to_input(self.x_test[start:start + batch_size]), self.y_test[start:start + batch_size]


def load_dataset(name: str, data_dir=DEFAULT_DATA_DIR, download: bool = False) -> ImageSplits:
    """`digits`, `mnist1d` (both built in), `cifar10` (python pickle batches) or `svhn` (.mat files) from `data_dir`.

    Raises DatasetNotFoundError with instructions when files are missing and `download` is False.
    """
    if name in OFFLINE_LOADERS:
        return ImageSplits(name, *OFFLINE_LOADERS[name]())
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_GEOMETRY)}")
    root = Path(data_dir).expanduser()
    if download:
        download_dataset(name, root)
    _check_present(name, root)
    arrays = _load_cifar10_arrays(root) if name == "cifar10" else _load_svhn_arrays(root)
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(a) for a in arrays)
    mean, std = CHANNEL_MEAN_STD[name]
    return ImageSplits(name, x_tr, y_tr, x_te, y_te, mean, std, augment=True)
