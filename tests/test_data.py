import gzip
import struct

import numpy as np
import pytest

from orchestrator import data
from orchestrator.data import DataFormatError, DataNotFoundError, find_data_dir, stratified_split


def test_train_split_shapes():
    x, y = data.load_train()
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60_000,) and set(np.unique(y)) == set(range(10))


def test_split_deterministic_stratified_disjoint():
    _, y = data.load_train()
    tr, va = stratified_split(y, 5000, seed=0)
    tr2, va2 = stratified_split(y, 5000, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert len(va) == 5000 and len(tr) == 55_000
    assert not set(tr) & set(va)
    assert set(tr) | set(va) == set(range(60_000))
    assert np.bincount(y[va], minlength=10).tolist() == [500] * 10  # every class keeps its 10% share
    _, va3 = stratified_split(y, 5000, seed=1)
    assert not np.array_equal(np.sort(va), np.sort(va3))


def test_uneven_split_sums_exactly():
    y = np.array([0] * 7 + [1] * 3 + [2] * 5)
    tr, va = stratified_split(y, 4, seed=3)
    assert len(va) == 4 and len(tr) == 11 and not set(tr) & set(va)


def test_limits(small_split):
    assert small_split.train_x.shape == (384, 28, 28) and len(small_split.val_y) == 200


def test_missing_explicit_dir_names_both_ways(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        find_data_dir(tmp_path / "nope")
    msg = str(e.value)
    assert "nope" in msg and "apt-get install -y dataset-fashion-mnist" in msg and "download=True" in msg


def test_nothing_found_lists_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KDSWEEP_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "no-system-dir")
    with pytest.raises(DataNotFoundError) as e:
        find_data_dir(download=False)
    assert "no-system-dir" in str(e.value) and "Searched" in str(e.value)


def test_env_var_dir_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSWEEP_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):  # named explicitly: no fallback
        find_data_dir()


def _write_idx(path, magic, dims, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload)


def test_bad_magic_and_truncation(tmp_path):
    d = find_data_dir()
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]:
        (tmp_path / name).write_bytes((d / name).read_bytes())
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 1234, (60_000,), bytes(60_000))
    with pytest.raises(DataFormatError, match="magic"):
        data.load_train(tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, (60_000,), bytes(100))
    with pytest.raises(DataFormatError, match="truncated"):
        data.load_train(tmp_path)
