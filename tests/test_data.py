import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import data


def test_checkerboard_support_and_cell_frequencies():
    x = np.asarray(data.checkerboard(jax.random.key(0), 40000))
    assert x.shape == (40000, 2)
    assert x.min() >= -2.0 and x.max() <= 2.0
    cells = np.floor(x + 2.0).astype(int)  # cell width 1 on [-2, 2]
    assert np.all((cells.sum(axis=1) % 2) == 0)  # every point on a dark cell
    _, counts = np.unique(cells[:, 0] * 4 + cells[:, 1], return_counts=True)
    assert len(counts) == 8
    # each of the 8 dark cells has probability 1/8: binomial std = sqrt(40000 * 1/8 * 7/8) = 66
    assert np.max(np.abs(counts - 5000)) < 5 * 66


def test_two_moons_exact_geometry():
    x = np.asarray(data.two_moons(jax.random.key(0), 4000, noise=0.0))
    c_up, c_low = np.array([-0.5, -0.25]), np.array([0.5, 0.25])
    d_up = np.linalg.norm(x - c_up, axis=1)
    d_low = np.linalg.norm(x - c_low, axis=1)
    # upper moon: upper half of the unit circle around c_up; lower moon: lower half around c_low
    on_up = (np.abs(d_up - 1.0) < 1e-5) & (x[:, 1] >= c_up[1] - 1e-6)
    on_low = (np.abs(d_low - 1.0) < 1e-5) & (x[:, 1] <= c_low[1] + 1e-6)
    assert np.all(on_up | on_low)
    assert abs(on_up.mean() - 0.5) < 5 * np.sqrt(0.25 / 4000)
    noisy = np.asarray(data.two_moons(jax.random.key(1), 4000, noise=0.05))
    assert abs(np.mean(noisy, axis=0)[0]) < 0.05  # centred in x by construction


def test_eight_gaussians_exact():
    gmm = data.eight_gaussians_mixture(radius=2.0, std=0.1)
    x = np.asarray(data.eight_gaussians(jax.random.key(0), 16000))
    ang = 2 * np.pi * np.arange(8) / 8
    centres = 2.0 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    nearest = np.argmin(np.linalg.norm(x[:, None] - centres[None], axis=2), axis=1)
    resid = x - centres[nearest]
    np.testing.assert_allclose(resid.std(axis=0), 0.1, rtol=0.03)  # std of std estimate ~0.6%
    counts = np.bincount(nearest, minlength=8)
    assert np.max(np.abs(counts - 2000)) < 5 * np.sqrt(16000 * 7 / 64)
    # exact log density at a centre: log(1/8 N(0; 0, 0.01 I) + tiny contributions of the others)
    lp = float(gmm.log_prob(jnp.asarray(centres[:1], jnp.float32))[0])
    np.testing.assert_allclose(lp, np.log(1 / 8) - np.log(2 * np.pi * 0.01), rtol=1e-5)


def test_toy_batches_are_functions_of_seed_and_step():
    bf = data.toy_batches("checkerboard", 16, seed=3)
    np.testing.assert_array_equal(bf(5)["x"], data.toy_batches("checkerboard", 16, seed=3)(5)["x"])
    assert not np.array_equal(bf(5)["x"], bf(6)["x"])
    assert not np.array_equal(bf(5)["x"], data.toy_batches("checkerboard", 16, seed=4)(5)["x"])
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.toy_batches("swiss_roll", 16)
    with pytest.raises(ValueError, match="batch_size"):
        data.toy_batches("checkerboard", 0)


def test_digits_split_scaling_and_labels():
    from sklearn.datasets import load_digits as sk

    raw = sk()
    xtr, ytr = data.load_digits("train")
    xte, yte = data.load_digits("test")
    xall, yall = data.load_digits("all")
    assert xtr.shape == (1497, 8, 8, 1) and xte.shape == (300, 8, 8, 1) and xall.shape == (1797, 8, 8, 1)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    assert xall.min() == -1.0 and xall.max() == 1.0
    np.testing.assert_array_equal(np.concatenate([xtr, xte]), xall)
    # a permutation of scikit-learn's data, scaled by x / 8 - 1, labels kept with their images
    ours = np.round((xall[..., 0] + 1.0) * 8.0).astype(np.uint8)
    np.testing.assert_array_equal(ours.astype(np.float32) / 8.0 - 1.0, xall[..., 0])
    assert sorted(zip(map(bytes, ours), yall.tolist())) == sorted(
        zip(map(bytes, raw.images.astype(np.uint8)), raw.target.tolist()))
    # deterministic split, all classes in the test split
    np.testing.assert_array_equal(data.load_digits("test")[1], yte)
    assert set(np.unique(yte)) == set(range(10))


def test_digits_upsampled():
    x8, _ = data.load_digits("test")
    x16n, _ = data.load_digits("test", size=16, upsample="nearest")
    assert x16n.shape == (300, 16, 16, 1)
    np.testing.assert_array_equal(x16n[:, ::2, ::2], x8)
    np.testing.assert_array_equal(x16n[:, 1::2, 1::2], x8)
    x16, _ = data.load_digits("test", size=16)
    assert x16.min() >= -1.0 and x16.max() <= 1.0
    # bilinear 2x upsampling (half-pixel centres) keeps the mean of each image up to edge effects
    np.testing.assert_allclose(x16.mean(axis=(1, 2, 3)), x8.mean(axis=(1, 2, 3)), atol=0.03)
    with pytest.raises(ValueError, match="size"):
        data.load_digits("train", size=32)
    with pytest.raises(ValueError, match="split"):
        data.load_digits("valid")


def test_array_batcher_epochs_and_resume():
    arrays = {"x": np.arange(10) * 10, "label": np.arange(10)}
    b = data.ArrayBatcher(arrays, 4, seed=7)
    seen = np.concatenate([b(s)["label"] for s in range(5)])  # 20 examples = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # reshuffled each epoch
    np.testing.assert_array_equal(b(3)["x"], b(3)["label"] * 10)  # arrays stay aligned
    fresh = data.ArrayBatcher(arrays, 4, seed=7)
    np.testing.assert_array_equal(fresh(3)["label"], b(3)["label"])  # resumable from the step alone
    ordered = data.ArrayBatcher(arrays, 4, shuffle=False)
    np.testing.assert_array_equal(ordered(2)["label"], [8, 9, 0, 1])
    with pytest.raises(ValueError, match="leading size"):
        data.ArrayBatcher({"x": np.zeros(3), "y": np.zeros(4)}, 2)


def test_tfds_mock_pipelines():
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("grain")
    with tfds.testing.mock_data(num_examples=10):
        source = data.tfds_source("mnist", "train", data_dir="/nonexistent/tfds")
        images = np.stack([np.asarray(source[i]["image"]) for i in range(len(source))])
        bf = data.image_batches("mnist", 5, data_dir="/nonexistent/tfds", seed=1)
        b0, b1 = bf(0), bf(1)
        assert b0["x"].shape == (5, 28, 28, 1) and b0["x"].dtype == np.float32
        assert b0["label"].shape == (5,) and b0["label"].dtype == np.int32
        assert b0["x"].min() >= -1.0 and b0["x"].max() <= 1.0
        # one epoch = each example exactly once, as (uint8 -> [-1, 1]) images
        got = np.concatenate([b0["x"], b1["x"]])
        back = np.round((got + 1.0) * 127.5).astype(np.uint8)
        assert sorted(map(bytes, back)) == sorted(map(bytes, images))
        # deterministic in (seed, step): a new pipeline gives the same batch 7
        again = data.image_batches("mnist", 5, data_dir="/nonexistent/tfds", seed=1)
        np.testing.assert_array_equal(again(7)["x"], bf(7)["x"])
        other = data.image_batches("mnist", 5, data_dir="/nonexistent/tfds", seed=2)
        assert not np.array_equal(other(0)["x"], b0["x"])

        cifar = data.image_batches("cifar10", 4)(3)
        assert cifar["x"].shape == (4, 32, 32, 3) and cifar["label"].shape == (4,)
        imnet = data.image_batches("downsampled_imagenet/64x64", 2, image_size=(64, 64))(0)
        assert imnet["x"].shape == (2, 64, 64, 3) and "label" not in imnet


def test_tfds_process_local_rows_make_up_the_global_batch(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("grain")
    import jax

    with tfds.testing.mock_data(num_examples=10):
        full = data.image_batches("mnist", 4, data_dir="/nonexistent/tfds", seed=3)
        one = data.image_batches("mnist", 4, data_dir="/nonexistent/tfds", seed=3, process_local=True)
        assert one.process_local and not getattr(full, "process_local", False)
        for k in ("x", "label"):  # a single host reads the whole batch
            np.testing.assert_array_equal(one(5)[k], full(5)[k])
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        parts = []
        for index in (0, 1):
            monkeypatch.setattr(jax, "process_index", lambda index=index: index)
            parts.append(one(5))
        for k in ("x", "label"):  # host 0 reads rows 0-1 and host 1 rows 2-3 of the same batch
            assert parts[0][k].shape[0] == 2
            np.testing.assert_array_equal(np.concatenate([parts[0][k], parts[1][k]]), full(5)[k])


def test_tfds_missing_dataset_error_names_dataset_and_dir(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DatasetNotPreparedError, match=r"'mnist'.*" + str(tmp_path)):
        data.tfds_source("mnist", "train", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        data.image_batches("cifar10", 8, data_dir=tmp_path)


# ----------------------------------------------------------------------------- Fashion-MNIST


def _write_idx(filename, array, code):
    import gzip

    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(filename, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_fashion_mnist_from_idx_files_a_test_writes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 0, 3, 7], np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 0x08)
    x, y, source = data.load_fashion_mnist("test", data_dir=tmp_path, return_source=True)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(np.round((x[..., 0] + 1) * 127.5).astype(np.uint8), images)  # [0, 255] -> [-1, 1]
    assert x.min() >= -1 and x.max() <= 1 and "IDX files" in source
    # a big-endian int32 IDX and a truncated one
    _write_idx(tmp_path / "ints-idx1-int.gz", np.array([1, -2, 300], np.int32), 0x0C)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "ints-idx1-int.gz")), [1, -2, 300])
    (tmp_path / "bad-idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ValueError, match=r"header says shape \(9,\).*truncated"):
        data.read_idx(str(tmp_path / "bad-idx"))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_fashion_mnist("val", data_dir=tmp_path)


def test_fashion_mnist_from_a_tfds_source_and_the_error_naming_both_ways(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    empty = tmp_path / "empty"
    empty.mkdir()
    with tfds.testing.mock_data(num_examples=6):
        x, y, source = data.load_fashion_mnist("train", data_dir=empty, tfds_dir="/nonexistent/tfds",
                                               return_source=True)
    assert x.shape == (6, 28, 28, 1) and y.shape == (6,) and "tfds" in source
    assert x.min() >= -1 and x.max() <= 1 and set(y.tolist()) <= set(range(10))
    with pytest.raises(data.DatasetNotPreparedError,
                       match="apt-get install dataset-fashion-mnist.*tfds build fashion_mnist"):
        data.load_fashion_mnist("test", data_dir=empty, tfds_dir=tmp_path / "no_tfds")


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIR), reason="dataset-fashion-mnist is not installed")
def test_the_installed_fashion_mnist_is_the_published_dataset():
    x, y = data.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)  # balanced held-out set
    assert y[:5].tolist() == [9, 2, 1, 1, 6]  # the published t10k labels begin so
