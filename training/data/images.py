"""Image loaders: MNIST IDX files, a folder of PNG/JPEG images per class, and the 8x8 digits."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_MAGIC = 2051  # IDX3: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # IDX1: unsigned bytes, 1 dimension
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_GZIP_MAGIC = b"\x1f\x8b"
_DIGITS_MAX = 16  # optdigits cells count "on" pixels in a 4x4 block: 0..16


def _read_maybe_gzip(path: Path) -> bytes:
    """File bytes, gunzipped when the file starts with the gzip magic (names are not trusted)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw


def _idx_header(data: bytes, path: Path, magic: int, n_dims: int) -> list[int]:
    """Check the IDX magic number and return the dimension sizes."""
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: IDX magic number is {found}, expected {magic}")
    header_len = 4 + 4 * n_dims
    if len(data) < header_len:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)]
    expected = header_len + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but header dims {dims} need {expected}")
    return dims


def load_mnist_idx(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, rows, cols] and labels int64 [N] from an IDX3/IDX1 pair, gzipped or raw."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    image_bytes = _read_maybe_gzip(images_path)
    n, rows, cols = _idx_header(image_bytes, images_path, IMAGE_MAGIC, 3)
    label_bytes = _read_maybe_gzip(labels_path)
    (n_labels,) = _idx_header(label_bytes, labels_path, LABEL_MAGIC, 1)
    if n != n_labels:
        raise ValueError(f"{images_path} has {n} images but {labels_path} has {n_labels} labels")
    x = np.frombuffer(image_bytes, np.uint8, offset=16).reshape(n, rows, cols).copy()
    y = np.frombuffer(label_bytes, np.uint8, offset=8).astype(np.int64)
    return x, y


def _one_file(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one file matching {pattern!r} in {folder}, found {len(matches)}")
    return matches[0]


def image_batch(images: np.ndarray, invert: bool = False) -> np.ndarray:
    """uint8 images [N, H, W] or [N, H, W, C] as float32 [N, C, H, W] in [0, 1] (1 - x when `invert`).

    What a CNN sees before standardising, in training and in `evaluate` alike.
    """
    x = images.astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, C, H, W)
    return 1.0 - x if invert else x


def load_mnist_pool(folder: str | os.PathLike[str], prefix: str = "train8k") -> tuple[np.ndarray, np.ndarray]:
    """The MNIST pool in a folder such as `mnist_test10k` (`<prefix>-images-idx3-ubyte[.gz]` + labels)."""
    folder = Path(folder)
    images = _one_file(folder, f"{prefix}-images-idx3-ubyte*")
    labels = _one_file(folder, f"{prefix}-labels-idx1-ubyte*")
    return load_mnist_idx(images, labels)


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image the way the service does: convert, then bilinear resize to (h, w)."""
    with Image.open(path) as source:
        img = source.convert(mode)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _class_images(root: Path) -> list[tuple[str, list[Path]]]:
    """Sorted (class name, sorted image files) for every sub-folder of root."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders")
    found = []
    for folder in classes:
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"class folder {folder} holds no PNG/JPEG images")
        found.append((folder.name, files))
    return found


def load_image_folder(
    root: str | os.PathLike[str], size: tuple[int, int] | None = None, channels: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 [N, H, W] (or [N, H, W, 3]), labels int64 and sorted class names from one sub-folder per class."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    images, labels, classes = [], [], []
    for index, (name, files) in enumerate(_class_images(Path(root))):
        classes.append(name)
        for path in files:
            images.append(_decode(path, mode, size))
            labels.append(index)
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise ValueError(f"images in {root} differ in size {sorted(shapes)}; pass size=(h, w) to resize")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _digits_to_uint8(counts: np.ndarray) -> np.ndarray:
    """Scale 8x8 counts 0..16 to 0..255 so the digits look like any other grayscale image."""
    return np.rint(counts.astype(np.float64) * (255.0 / _DIGITS_MAX)).astype(np.uint8)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 rows, no download) as uint8 [N, 8, 8] 0..255 and int64 labels."""
    from sklearn.datasets import load_digits  # training extra only; keep the module importable without it

    digits = load_digits()
    return _digits_to_uint8(digits.images), digits.target.astype(np.int64)


def load_optdigits(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits `.tra`/`.tes` (optional header line, 64 counts then the class) as uint8 [N, 8, 8] and labels."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        line = line.strip()  # the header line ends in CRLF, data lines in LF
        if not line or not line[0].isdigit():
            continue  # blank line or the "Block 1,...,Class" header that UCI's originals lack
        fields = line.split(",")
        if len(fields) != 65:
            raise ValueError(f"{path}:{number}: expected 65 fields, got {len(fields)}")
        rows.append([int(v) for v in fields])
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    data = np.asarray(rows, dtype=np.int64)
    if data[:, :64].min() < 0 or data[:, :64].max() > _DIGITS_MAX:
        raise ValueError(f"{path}: cell counts outside 0..{_DIGITS_MAX}")
    return _digits_to_uint8(data[:, :64].reshape(-1, 8, 8)), data[:, 64]
