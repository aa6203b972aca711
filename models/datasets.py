"""Input geometry of each supported dataset, and scikit-learn's 8x8 digits as the built-in offline dataset.

`DATASET_GEOMETRY` is the one place that says which image size, patch size, input channels and classes a dataset
implies; models, export and builds read it from here.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DatasetGeometry:
    """Image and patch geometry of a dataset, as ResMLP keyword arguments."""

    img_size: int
    patch_size: int
    in_channels: int
    num_classes: int

    @property
    def num_tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.in_channels

    def model_kwargs(self) -> dict:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_channels=self.in_channels,
                    num_classes=self.num_classes)


DATASET_GEOMETRY = {
    "cifar10": DatasetGeometry(img_size=32, patch_size=4, in_channels=3, num_classes=10),
    "svhn": DatasetGeometry(img_size=32, patch_size=4, in_channels=3, num_classes=10),
    "digits": DatasetGeometry(img_size=8, patch_size=2, in_channels=1, num_classes=10),
}

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
