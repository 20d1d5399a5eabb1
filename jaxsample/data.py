"""Datasets: offline built-ins and tfds/grain pipelines for real image datasets.

Offline (nothing is ever downloaded):

- 2-D toys as exact samplers: :func:`checkerboard`, :func:`two_moons`, :func:`eight_gaussians`
  (the last also as an exact :class:`~jaxsample.models.GaussianMixture`, :func:`eight_gaussians_mixture`).
- scikit-learn's 8x8 digits (bundled with scikit-learn): :func:`load_digits`, scaled to [-1, 1],
  shape (N, 8, 8, 1) or upsampled to (N, 16, 16, 1), with labels and a fixed 1497 / 300
  train / test split.

Real datasets (cifar10, mnist, downsampled_imagenet/64x64, ...) are read with
``tfds.data_source`` (ArrayRecord files prepared beforehand; TensorFlow is not needed) and
batched with ``grain``: :func:`tfds_source`, :func:`image_batches`.

Batches for :func:`jaxsample.train.fit` come from a function of the step (``batch_fn(step)``),
so a resumed run sees exactly the batches the interrupted one would have: :class:`ArrayBatcher`,
:func:`toy_batches`, :func:`image_batches`.

Example:
    >>> import jax
    >>> from jaxsample import data
    >>> x = data.two_moons(jax.random.key(0), 5)
    >>> x.shape
    (5, 2)
    >>> images, labels = data.load_digits("test")
    >>> images.shape, labels.shape
    ((300, 8, 8, 1), (300,))
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import GaussianMixture

__all__ = [
    "checkerboard",
    "two_moons",
    "eight_gaussians",
    "eight_gaussians_mixture",
    "TOY_DATASETS",
    "toy_sample",
    "toy_batches",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "DIGITS_NUM_TRAIN",
    "DIGITS_NUM_TEST",
    "ArrayBatcher",
    "tfds_source",
    "image_batches",
    "DatasetNotPreparedError",
]


# --------------------------------------------------------------------------------------------
# 2-D toys


def checkerboard(key, num_samples: int, *, num_cells: int = 4, scale: float = 2.0):
    """Uniform samples on the dark cells of a ``num_cells`` x ``num_cells`` checkerboard
    covering [-scale, scale]^2. Cell (i, j) (column i, row j from the lower left) is dark when
    i + j is even; there are ceil(num_cells^2 / 2) dark cells, equally likely."""
    kc, ku = jax.random.split(key)
    dark = np.array([(i, j) for j in range(num_cells) for i in range(num_cells) if (i + j) % 2 == 0])
    idx = jax.random.randint(kc, (num_samples,), 0, len(dark))
    u = jax.random.uniform(ku, (num_samples, 2))
    width = 2.0 * scale / num_cells
    return (jnp.asarray(dark, jnp.float32)[idx] + u) * width - scale


def two_moons(key, num_samples: int, *, noise: float = 0.05):
    """Two interleaving half circles (as scikit-learn's ``make_moons``), each with probability 1/2:
    upper ``(cos a, sin a)``, lower ``(1 - cos a, 0.5 - sin a)``, a ~ U(0, pi), plus
    N(0, noise^2) noise; then centred by subtracting (0.5, 0.25)."""
    ka, km, kn = jax.random.split(key, 3)
    a = jax.random.uniform(ka, (num_samples,), maxval=jnp.pi)
    upper = jax.random.bernoulli(km, 0.5, (num_samples,))
    x = jnp.where(upper, jnp.cos(a), 1.0 - jnp.cos(a))
    y = jnp.where(upper, jnp.sin(a), 0.5 - jnp.sin(a))
    pts = jnp.stack([x, y], axis=-1) + noise * jax.random.normal(kn, (num_samples, 2))
    return pts - jnp.array([0.5, 0.25])


def eight_gaussians_mixture(*, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Eight equally weighted isotropic Gaussians centred at ``radius * (cos 2 pi k/8, sin 2 pi k/8)``."""
    ang = 2.0 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    return GaussianMixture(jnp.asarray(means, jnp.float32), jnp.full((8, 2), std, jnp.float32))


def eight_gaussians(key, num_samples: int, *, radius: float = 2.0, std: float = 0.1):
    """Exact samples of :func:`eight_gaussians_mixture`."""
    return eight_gaussians_mixture(radius=radius, std=std).sample(key, num_samples)


TOY_DATASETS = {"checkerboard": checkerboard, "two_moons": two_moons, "eight_gaussians": eight_gaussians}


def toy_sample(name: str, key, num_samples: int, **kwargs):
    """Samples from the toy named ``name`` (one of :data:`TOY_DATASETS`)."""
    if name not in TOY_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    return TOY_DATASETS[name](key, num_samples, **kwargs)


def toy_batches(name: str, batch_size: int, *, seed: int = 0, **kwargs) -> Callable[[int], dict]:
    """``batch_fn(step) -> {'x': ...}``: fresh exact samples drawn from ``fold_in(key(seed), step)``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    _check_batch_size(batch_size)
    base = jax.random.key(seed)
    sampler = jax.jit(lambda k: TOY_DATASETS[name](k, batch_size, **kwargs))

    def batch_fn(step: int) -> dict:
        return {"x": sampler(jax.random.fold_in(base, step))}

    return batch_fn


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


# --------------------------------------------------------------------------------------------
# scikit-learn digits

DIGITS_NUM_TRAIN = 1497
DIGITS_NUM_TEST = 300
_DIGITS_SPLIT_SEED = 20240601


@functools.lru_cache(maxsize=None)
def _digits_arrays():
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    images = d.images.astype(np.float32) / 8.0 - 1.0  # pixel values 0..16 -> [-1, 1]
    labels = d.target.astype(np.int32)
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
    return images[perm][..., None], labels[perm]


def load_digits(split: str = "train", *, size: int = 8, upsample: str = "linear"):
    """scikit-learn's 8x8 digits (1797 images, 10 classes), pixels scaled from [0, 16] to [-1, 1].

    Args:
        split: ``'train'`` (1497 images), ``'test'`` (300) or ``'all'`` (1797); the split is a
            fixed permutation (the same on every machine and every call).
        size: 8, or 16 to upsample (by 2x, with ``upsample`` = ``'linear'`` or ``'nearest'``;
            ``'linear'`` is ``jax.image.resize`` bilinear, clipped to [-1, 1]).

    Returns:
        ``(images, labels)``: float32 (N, size, size, 1) and int32 (N,), numpy arrays.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if size not in (8, 16):
        raise ValueError(f"size must be 8 or 16, got {size!r}")
    if upsample not in ("linear", "nearest"):
        raise ValueError(f"upsample must be 'linear' or 'nearest', got {upsample!r}")
    images, labels = _digits_arrays()
    if split == "train":
        images, labels = images[:DIGITS_NUM_TRAIN], labels[:DIGITS_NUM_TRAIN]
    elif split == "test":
        images, labels = images[DIGITS_NUM_TRAIN:], labels[DIGITS_NUM_TRAIN:]
    if size == 16:
        if upsample == "nearest":
            images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
        else:
            out = jax.image.resize(jnp.asarray(images), (images.shape[0], 16, 16, 1), method="linear")
            images = np.clip(np.asarray(out), -1.0, 1.0)
    return np.array(images, np.float32), np.array(labels, np.int32)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian's dataset-fashion-mnist IDX files, or a prepared tfds source)

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(filename: str) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian header, then the array), plain or ``.gz``.

    Example:
        >>> import gzip, os, tempfile
        >>> import numpy as np
        >>> f = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
        >>> with gzip.open(f, "wb") as out:
        ...     _ = out.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))   # magic, size 3, data
        >>> read_idx(f)
        array([7, 2, 9], dtype=uint8)
    """
    import gzip

    opener = gzip.open if filename.endswith(".gz") else open
    with opener(filename, "rb") as f:
        blob = f.read()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise ValueError(f"filename {filename!r} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if blob[2] not in dtypes:
        raise ValueError(f"filename {filename!r}: unknown IDX data type 0x{blob[2]:02x}")
    ndim = blob[3]
    shape = tuple(int(d) for d in np.frombuffer(blob, ">i4", ndim, 4))
    dtype = np.dtype(dtypes[blob[2]])
    body = blob[4 + 4 * ndim:]
    if len(body) != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"filename {filename!r}: header says shape {shape}, but the file holds {len(body)} bytes "
                         f"of data (truncated?)")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_path(directory: str, stem: str):
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


@functools.lru_cache(maxsize=4)
def _fashion_arrays(split: str, data_dir, tfds_dir):
    directories = [data_dir] if data_dir is not None else [os.environ.get("JAXSAMPLE_FASHION_MNIST_DIR"),
                                                           FASHION_MNIST_DIR]
    for directory in filter(None, directories):
        files = [_idx_path(directory, stem) for stem in _IDX_FILES[split]]
        if all(files):
            images, labels = (read_idx(f) for f in files)
            if images.ndim != 3 or labels.shape != images.shape[:1]:
                raise ValueError(f"{files[0]}: expected (N, 28, 28) images with N labels, got {images.shape} "
                                 f"and {labels.shape}")
            return images, labels, f"IDX files in {directory}"
    try:
        source = tfds_source("fashion_mnist", split, tfds_dir)
    except (DatasetNotPreparedError, ImportError) as err:
        where = " or ".join(repr(d) for d in filter(None, directories))
        raise DatasetNotPreparedError(
            f"Fashion-MNIST ({split!r}) was found neither as IDX files in {where} nor as a prepared tfds "
            f"source: install Debian's package (`apt-get install dataset-fashion-mnist`, files in "
            f"{FASHION_MNIST_DIR}; or set JAXSAMPLE_FASHION_MNIST_DIR to a folder with the four IDX files), "
            f"or prepare it with `tfds build fashion_mnist --file_format=array_record` ({err})") from None
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e["image"]).reshape(28, 28) for e in examples])
    labels = np.asarray([e["label"] for e in examples])
    return images, labels, f"tfds data source {tfds_dir or _default_data_dir(None)!r}"


def load_fashion_mnist(split: str = "train", *, data_dir=None, tfds_dir=None, return_source: bool = False):
    """Fashion-MNIST (Xiao et al. 2017; MIT licence): 28x28 grey images of 10 kinds of clothing,
    60,000 for training and 10,000 held out, pixels scaled from [0, 255] to [-1, 1].

    Read from the IDX files of Debian's ``dataset-fashion-mnist`` package
    (:data:`FASHION_MNIST_DIR`, or ``data_dir``, or ``$JAXSAMPLE_FASHION_MNIST_DIR``) when they are
    there, else from ``tfds.data_source("fashion_mnist")`` prepared in ``tfds_dir``; nothing is
    downloaded. Neither: :class:`DatasetNotPreparedError` naming both ways to get the data.

    Args:
        split: ``'train'`` or ``'test'``.
        return_source: also return a string saying where the data came from.

    Returns:
        ``(images, labels)``: float32 (N, 28, 28, 1) in [-1, 1] and int32 (N,) numpy arrays.
    """
    if split not in _IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels, source = _fashion_arrays(split, None if data_dir is None else os.fspath(data_dir),
                                             None if tfds_dir is None else os.fspath(tfds_dir))
    x = (images.astype(np.float32) / 127.5 - 1.0)[..., None]
    out = (x, labels.astype(np.int32))
    return (*out, source) if return_source else out


# --------------------------------------------------------------------------------------------
# Deterministic, resumable batching of in-memory arrays


class ArrayBatcher:
    """``batcher(step) -> batch`` over in-memory arrays, reshuffled each epoch, resumable.

    Batch ``step`` covers positions ``[step * B, (step + 1) * B)`` of an infinite stream made of
    successive epochs; epoch ``e`` is the permutation ``default_rng([seed, e])`` of the examples.
    The batch is a pure function of ``(seed, step)``.

    Args:
        arrays: a mapping name -> array, all with the same leading size N (e.g.
            ``{'x': images, 'label': labels}``).
        batch_size: examples per batch.
        seed: shuffling seed.
        shuffle: if False, epochs go through the examples in order.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, *, seed: int = 0, shuffle: bool = True):
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError("arrays must be a non-empty mapping name -> array")
        _check_batch_size(batch_size)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: v.shape[0] if v.ndim else None for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"arrays must share their leading size, got {sizes}")
        self.num_examples = next(iter(sizes.values()))
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle

    @functools.lru_cache(maxsize=4)
    def _perm(self, epoch: int):
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def indices(self, step: int) -> np.ndarray:
        """Example indices of batch ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        pos = step * self.batch_size + np.arange(self.batch_size)
        epochs, offsets = np.divmod(pos, self.num_examples)
        out = np.empty(self.batch_size, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[offsets[sel]]
        return out

    def __call__(self, step: int) -> dict:
        idx = self.indices(int(step))
        return {k: v[idx] for k, v in self.arrays.items()}


# --------------------------------------------------------------------------------------------
# tfds data sources + grain


class DatasetNotPreparedError(FileNotFoundError):
    """A tfds dataset is not prepared (as ArrayRecord) in the given data_dir."""


def _default_data_dir(data_dir):
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def tfds_source(name: str, split: str = "train", data_dir=None):
    """A random-access tfds data source (``tfds.data_source``), without TensorFlow.

    The dataset must already be prepared under ``data_dir`` in the ArrayRecord format
    (``tfds build NAME --file_format=array_record --data_dir DIR`` on a machine with
    internet access); nothing is downloaded here. Raises :class:`DatasetNotPreparedError`
    naming the dataset and ``data_dir`` otherwise.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover
        raise ImportError("tfds_source needs `pip install tensorflow-datasets grain`") from e
    data_dir = _default_data_dir(data_dir)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises various errors (AssertionError, NotImplementedError, ...)
        raise DatasetNotPreparedError(
            f"dataset {name!r} (split {split!r}) is not prepared in data_dir={data_dir!r}: "
            f"prepare it offline with `tfds build {name.split('/')[0]} --file_format=array_record "
            f"--data_dir {data_dir}` and copy it here ({type(e).__name__}: {e})"
        ) from e


def _nearest_resize(image: np.ndarray, size) -> np.ndarray:
    h, w = image.shape[:2]
    rows = (np.arange(size[0]) * h // size[0]).astype(np.int64)
    cols = (np.arange(size[1]) * w // size[1]).astype(np.int64)
    return image[rows][:, cols]


def _preprocess(example, image_size):
    image = np.asarray(example["image"])
    if image.ndim == 2:
        image = image[..., None]
    if image_size is not None and image.shape[:2] != tuple(image_size):
        image = _nearest_resize(image, image_size)
    out = {"x": image.astype(np.float32) / 127.5 - 1.0}
    if "label" in example:
        out["label"] = np.asarray(example["label"], np.int32)
    return out


def image_batches(
    name: str,
    batch_size: int,
    *,
    split: str = "train",
    data_dir=None,
    seed: int = 0,
    shuffle: bool = True,
    image_size: Optional[tuple] = None,
    source=None,
    process_local: bool = False,
) -> Callable[[int], dict]:
    """``batch_fn(step) -> {'x', 'label'?}`` over a tfds dataset, via a grain ``MapDataset``.

    Images are uint8 -> float32 in [-1, 1], NHWC; labels int32 (when the dataset has them).
    Batch ``step`` is element ``step`` of ``source.shuffle(seed).repeat().map(...).batch(B)``
    (grain reshuffles each epoch from ``seed``), so it is a pure function of ``(seed, step)``: a
    resumed run reads the same batches. ``image_size=(H, W)`` resizes (nearest) images whose
    size differs (e.g. variable-size sources). ``source`` overrides the tfds lookup.

    ``process_local=True`` (multi-host training): each host reads and decodes only its own rows
    (:func:`jaxsample.parallel.process_rows`) of each global batch; the returned ``batch_fn`` is
    marked so that :func:`jaxsample.train.fit` assembles the global batch from the hosts' rows.
    """
    import grain

    _check_batch_size(batch_size)
    if source is None:
        source = tfds_source(name, split, data_dir)
    if len(source) < 1:
        raise ValueError(f"dataset {name!r} split {split!r} is empty")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    elements = ds.repeat(None).map(functools.partial(_preprocess, image_size=image_size))
    ds = elements.batch(batch_size, drop_remainder=True)

    def batch_fn(step: int) -> dict:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return ds[int(step)]

    def local_batch_fn(step: int) -> dict:
        from jaxsample.parallel import process_rows

        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        rows = process_rows(batch_size)
        items = [elements[int(step) * batch_size + i] for i in range(rows.start, rows.stop)]
        return {k: np.stack([item[k] for item in items]) for k in items[0]}

    if process_local:
        batch_fn = local_batch_fn
        batch_fn.process_local = True
    batch_fn.dataset = ds
    return batch_fn
