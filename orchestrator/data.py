"""Fashion-MNIST from its original IDX `.gz` files, held in memory as uint8 arrays.

The sweep reads only the training split (`load_train`) and carves a seeded,
stratified validation set out of it (`split_train_val`). The test split is read
by `load_test`, which only export and `teacher eval` call.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import UserError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x0803 = ubyte 3-d, 0x0801 = ubyte 1-d
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
HOW_TO_GET = (
    "Get the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) one of two ways:\n"
    "  1. on Debian/Ubuntu: sudo apt-get install -y dataset-fashion-mnist  "
    "(installs them in /usr/share/datasets/fashion-mnist)\n"
    '  2. with internet access: python -c "import torchvision; '
    "torchvision.datasets.FashionMNIST('data', download=True)\"  (writes ./data/FashionMNIST/raw)\n"
    "then pass --data-dir DIR or set KDSWEEP_DATA=DIR if they live elsewhere."
)


class DataNotFoundError(FileNotFoundError):
    """The Fashion-MNIST files are nowhere we looked; the message says how to get them."""


class DataFormatError(UserError):
    """A file exists but is not the IDX file it should be."""


def _holds_files(d: Path) -> bool:
    return all((d / name).is_file() for split in FILES.values() for name in split[:2])


def _candidates(d: Path) -> list[Path]:
    # torchvision's download keeps the .gz files in <root>/FashionMNIST/raw.
    return [d, d / "FashionMNIST" / "raw"]


def find_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The directory holding the four IDX files.

    Order: `data_dir` (or $KDSWEEP_DATA), ./data, /usr/share/datasets/fashion-mnist,
    then torchvision's download into ./data. A directory named explicitly must hold
    the files: there is no silent fallback from it.
    """
    explicit = data_dir if data_dir is not None else os.environ.get("KDSWEEP_DATA") or None
    if explicit is not None:
        for d in _candidates(Path(explicit).expanduser()):
            if _holds_files(d):
                return d.resolve()
        raise DataNotFoundError(
            f"Fashion-MNIST files not found in {explicit} (named by --data-dir/"
            f"KDSWEEP_DATA/data.data_dir).\n{HOW_TO_GET}"
        )
    searched = [*_candidates(Path("data")), SYSTEM_DIR]
    for d in searched:
        if _holds_files(d):
            return d.resolve()
    if download:
        try:
            import torchvision

            torchvision.datasets.FashionMNIST("data", train=True, download=True)
            torchvision.datasets.FashionMNIST("data", train=False, download=True)
            if _holds_files(Path("data/FashionMNIST/raw")):
                return Path("data/FashionMNIST/raw").resolve()
        except Exception as e:  # no network, no torchvision: fall through to the error
            searched.append(Path(f"torchvision download into ./data (failed: {type(e).__name__}: {e})"))
    raise DataNotFoundError(
        "Fashion-MNIST files not found. Searched:\n" + "".join(f"  - {p}\n" for p in searched) + HOW_TO_GET
    )


def _open_idx(path: Path) -> bytes:
    """Every read of a data file goes through here (tests audit it)."""
    with gzip.open(path, "rb") as f:
        return f.read()


def _parse_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        raw = _open_idx(path)
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path}: cannot read as gzip ({e}); delete it and fetch it again.\n{HOW_TO_GET}") from e
    return _parse_bytes(raw, path, magic, ndim)


def _parse_bytes(raw: bytes, path, magic: int, ndim: int) -> np.ndarray:
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataFormatError(f"{path}: not an IDX file with magic {magic}; is it the right file?")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim)  # writable copy
    if body.size != int(np.prod(dims)):
        raise DataFormatError(f"{path}: header says {dims} but holds {body.size} bytes; the file is truncated.")
    return body.reshape(dims)


def read_idx_images(path) -> np.ndarray:
    """Any IDX image file (gzip or raw) of 28x28 uint8 images -> (N, 28, 28); for `kdsweep predict`."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataFormatError(f"{path}: cannot read as gzip ({e})") from None
    images = _parse_bytes(raw, path, IMAGE_MAGIC, 3)
    if images.shape[1:] != (28, 28):
        raise DataFormatError(f"{path}: images are {images.shape[1:]}, expected 28x28")
    return images


def _load(split: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    img_name, lbl_name, n = FILES[split]
    d = find_data_dir(data_dir)
    images = _parse_idx(d / img_name, IMAGE_MAGIC, 3)
    labels = _parse_idx(d / lbl_name, LABEL_MAGIC, 1)
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataFormatError(
            f"{d}: {split} split has images {images.shape} and labels {labels.shape}; "
            f"expected ({n}, 28, 28) and ({n},)."
        )
    if labels.max() > 9:
        raise DataFormatError(f"{d / lbl_name}: labels outside 0..9")
    return images, labels.astype(np.int64)


def load_train(data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Training split: images uint8 (60000, 28, 28), labels int64 (60000,)."""
    return _load("train", data_dir)


def load_test(data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Test split: images uint8 (10000, 28, 28), labels int64 (10000,). Export and eval only."""
    return _load("test", data_dir)


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): a seeded split where every class keeps its share in validation.

    Class c gets round(val_size * n_c / N) validation images, with the rounding
    remainder given to the classes with the largest fractional parts so the sizes
    add up to val_size exactly. Both index arrays come back shuffled.
    """
    n = len(labels)
    if not 0 < val_size < n:
        raise UserError(f"val_size must be in 1..{n - 1}, got {val_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / n
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: val_size - take.sum()]:
        take[i] += 1
    train_parts, val_parts = [], []
    for c, k in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(val_parts))


@dataclass(frozen=True)
class Split:
    """In-memory train/validation arrays: x uint8 (N, 28, 28), y int64 (N,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


def load_split(
    data_dir=None, val_size: int = 5000, seed: int = 0, train_limit: int | None = None, val_limit: int | None = None
) -> Split:
    """The training split cut into train/validation; limits keep the first N of each (small runs)."""
    x, y = load_train(data_dir)
    tr, va = stratified_split(y, val_size, seed)
    tr, va = tr[:train_limit], va[:val_limit]
    return Split(np.ascontiguousarray(x[tr]), y[tr], np.ascontiguousarray(x[va]), y[va])
