"""Datasets for the search: scikit-learn's digits (no download), CIFAR-10 from a local folder, an image folder.

Every dataset is split into train (supernet weights), val (architecture parameters, as DARTS does) and
test (held out; the reported accuracy), stratified by class with a fixed seed. Images are resized to
the space's input size and normalised per item, so nothing larger than the raw data is kept in memory.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import InvalidInput
from .config import DataConfig

_logger = logging.getLogger(__name__)

__all__ = ["DataSplits", "load_splits", "make_loader", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    name: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class _ArrayImages(Dataset):
    """Images held as an (N, C, H, W) array in [0, 1] (uint8 scaled on access), resized and normalised per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, mean: Sequence[float],
                 std: Sequence[float]):
        self.images, self.labels, self.size = images, labels.astype(np.int64), size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.from_numpy(np.asarray(self.images[index], dtype=np.float32))
        if self.images.dtype == np.uint8:
            image = image / 255.0
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if image.shape[-1] != self.size:
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        return (image - self.mean) / self.std, int(self.labels[index])


class _ImageFiles(Dataset):
    """An image folder (one subfolder per class) read lazily with PIL."""

    def __init__(self, files: Sequence[Path], labels: np.ndarray, size: int):
        self.files, self.labels, self.size = list(files), labels.astype(np.int64), size
        self.mean = torch.tensor(_IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(_IMAGENET_STD).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[index]) as image:
                pixels = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
        except (OSError, UnidentifiedImageError) as error:
            raise InvalidInput(f"image {str(self.files[index])!r} cannot be read ({error}); remove it from "
                             "the image folder") from None
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
        return (image - self.mean) / self.std, int(self.labels[index])


class _Subset(Dataset):
    def __init__(self, dataset: Dataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]


def _stratified_take(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of ``count`` samples with the class proportions of ``labels`` (all of them if fewer)."""
    if count >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    taken, _ = train_test_split(np.arange(len(labels)), train_size=count, random_state=seed,
                                stratify=_stratifiable(labels, count))
    return np.sort(taken)


def _stratifiable(labels: np.ndarray, count: int) -> np.ndarray | None:
    """Stratify only when every class can appear on both sides of the split."""
    _, counts = np.unique(labels, return_counts=True)
    return labels if counts.min() >= 2 and count >= len(counts) and len(labels) - count >= len(counts) else None


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, split-off) indices with ``fraction`` split off, stratified by class."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    split_count = max(1, int(round(fraction * len(labels))))
    kept, split_off = train_test_split(indices, test_size=split_count, random_state=seed,
                                       stratify=_stratifiable(labels, split_count))
    return np.sort(kept), np.sort(split_off)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return images, digits.target


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR-10's own format is a pickle; this reads it but refuses anything except numpy arrays.

    Only the dataset's ``data_batch_N``/``test_batch`` files are opened with it, and only the globals a
    pickled numpy array needs may be resolved, so a tampered file cannot run code.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(len(data), 3, 32, 32)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"{path} is not a CIFAR-10 python batch ({type(error).__name__}: {error}); "
                         "re-extract cifar-10-python.tar.gz") from None
    if len(labels) != len(images):
        raise InvalidInput(f"{path} has {len(images)} images but {len(labels)} labels; re-extract cifar-10-python.tar.gz")
    return images, labels


def _cifar10(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"data.path {str(path)!r} lacks CIFAR-10 file(s) {', '.join(missing)}; point it at the "
                         "extracted cifar-10-python.tar.gz (the folder holding data_batch_1..5 and test_batch)")
    train = [_cifar_batch(folder / name) for name in names[:-1]]
    test = _cifar_batch(folder / "test_batch")
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])), test


def _image_folder(path: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(f for f in (path / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        files.extend(found)
        labels.extend([label] * len(found))
    if len(classes) < 2 or not files:
        raise InvalidInput(f"data.path {str(path)!r} is not an image folder: it needs one subfolder per class "
                         f"(at least 2) holding images ({', '.join(IMAGE_SUFFIXES)}); found {len(classes)} "
                         f"subfolder(s) and {len(files)} image(s)")
    return files, np.asarray(labels), classes


def load_splits(config: DataConfig, input_size: int) -> DataSplits:
    """Load ``config.dataset`` and split it; a missing or malformed dataset is a one-line ValueError."""
    test_pool = None
    if config.dataset == "digits":
        images, labels = _digits()
        stats = ((float(images.mean()),) * 3, (float(images.std()),) * 3)
    else:
        path = Path(str(config.path)).expanduser()
        if not path.is_dir():
            raise InvalidInput(f"data.path {str(path)!r} does not exist or is not a folder; set data.path to the "
                             f"folder holding the {config.dataset} data")
        if config.dataset == "cifar10":
            (images, labels), test_pool = _cifar10(path)
            stats = (_CIFAR_MEAN, _CIFAR_STD)
        else:
            files, labels, _ = _image_folder(path)
            images = np.asarray(files, dtype=object)

    def make(x: np.ndarray, y: np.ndarray) -> Dataset:
        if config.dataset == "imagefolder":
            return _ImageFiles(list(x), y, input_size)
        return _ArrayImages(x, y, input_size, *stats)

    if config.limit is not None:
        keep = _stratified_take(labels, config.limit, config.seed)
        images, labels = images[keep], labels[keep]
        if test_pool is not None:
            keep = _stratified_take(test_pool[1], config.limit, config.seed)
            test_pool = (test_pool[0][keep], test_pool[1][keep])
    if test_pool is None:
        if config.test_fraction > 0:
            pool, test_index = _split(labels, config.test_fraction, config.seed)
            test_pool = (images[test_index], labels[test_index])
            images, labels = images[pool], labels[pool]
        else:
            _logger.warning("data.test_fraction is 0: the reported accuracy is on the val split, which also "
                            "chose the architecture")
    val_fraction = config.val_fraction / (1.0 - (config.test_fraction if config.dataset != "cifar10" else 0.0))
    train_index, val_index = _split(labels, min(val_fraction, 0.9), config.seed + 1)
    val = make(images[val_index], labels[val_index])
    test = make(*test_pool) if test_pool is not None else val
    splits = DataSplits(make(images[train_index], labels[train_index]), val, test,
                        num_classes=int(max(labels.max(), test_pool[1].max() if test_pool else 0)) + 1,
                        name=config.dataset)
    _logger.info("data: %s, %s", config.dataset, ", ".join(f"{k} {v}" for k, v in splits.sizes().items()))
    return splits


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False):
    """A traced DataLoader (NNI's), with its own seeded generator so shuffling is reproducible."""
    from nni.nas.evaluator.pytorch import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator if shuffle else None, drop_last=drop_last,
                      persistent_workers=num_workers > 0)
