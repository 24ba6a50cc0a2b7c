"""utils.data: TensorDataset, DataLoader batching/shuffling, generic datasets, random_split."""
import numpy as np
import pytest

import fastmlp
from fastmlp.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split


def make(n=10):
    x = fastmlp.arange(n * 2, dtype=fastmlp.float32).reshape(n, 2)
    y = fastmlp.arange(n, dtype=fastmlp.float32).reshape(n, 1)
    return x, y, TensorDataset(x, y)


def test_tensordataset():
    x, y, ds = make()
    assert len(ds) == 10
    a, b = ds[3]
    assert a.tolist() == [6.0, 7.0] and b.tolist() == [3.0]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(x, fastmlp.zeros(3))


@pytest.mark.parametrize("bs,drop,expect", [(3, False, [3, 3, 3, 1]), (3, True, [3, 3, 3]),
                                            (10, False, [10]), (20, False, [10])])
def test_batches_in_order(bs, drop, expect):
    x, y, ds = make()
    dl = DataLoader(ds, batch_size=bs, drop_last=drop)
    batches = list(dl)
    assert len(dl) == len(expect) and [len(b[0]) for b in batches] == expect
    got = np.concatenate([b[0].numpy() for b in batches])
    np.testing.assert_array_equal(got, x.numpy()[:len(got)])
    assert isinstance(batches[0][0], fastmlp.Tensor)
    batches[0][0].numpy()[:] = -1  # batches are copies, not views into the dataset
    assert x.numpy().min() >= 0


def test_shuffle_is_a_permutation_and_reproducible():
    x, y, ds = make(50)
    dl = DataLoader(ds, batch_size=8, shuffle=True, seed=123)
    first = [b[1].numpy().ravel().copy() for b in dl]
    order = np.concatenate(first)
    assert sorted(order.tolist()) == list(range(50)) and order.tolist() != list(range(50))
    second = np.concatenate([b[1].numpy().ravel() for b in dl])
    assert second.tolist() != order.tolist()  # a new order each epoch
    for inputs, labels in DataLoader(ds, batch_size=8, shuffle=True, seed=7):
        np.testing.assert_array_equal(inputs.numpy()[:, 0] / 2, labels.numpy()[:, 0])  # rows stay paired
    again = np.concatenate([b[1].numpy().ravel() for b in DataLoader(ds, batch_size=8, shuffle=True, seed=123)])
    assert again.tolist() == order.tolist()
    g1 = fastmlp.Generator().manual_seed(5)
    g2 = fastmlp.Generator().manual_seed(5)
    a = [b[1].numpy().copy() for b in DataLoader(ds, batch_size=8, shuffle=True, generator=g1)]
    b = [b[1].numpy().copy() for b in DataLoader(ds, batch_size=8, shuffle=True, generator=g2)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    fastmlp.manual_seed(9)
    c = np.concatenate([b[1].numpy() for b in DataLoader(ds, batch_size=8, shuffle=True)])
    fastmlp.manual_seed(9)
    d = np.concatenate([b[1].numpy() for b in DataLoader(ds, batch_size=8, shuffle=True)])
    np.testing.assert_array_equal(c, d)


class Squares(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return fastmlp.tensor([float(i)]), i * i, {"id": i}


def test_generic_dataset_collation():
    batches = list(DataLoader(Squares(), batch_size=3))
    assert len(batches) == 3
    x, sq, meta = batches[0]
    assert x.shape == (3, 1) and sq.tolist() == [0, 1, 4] and sq.dtype == fastmlp.int64
    assert meta["id"].tolist() == [0, 1, 2]


def test_subset_and_random_split():
    x, y, ds = make(20)
    a, b = random_split(ds, [15, 5], generator=fastmlp.Generator().manual_seed(0))
    assert len(a) == 15 and len(b) == 5
    seen = np.concatenate([bt[1].numpy().ravel() for bt in DataLoader(a, batch_size=4)] +
                          [bt[1].numpy().ravel() for bt in DataLoader(b, batch_size=4)])
    assert sorted(seen.tolist()) == list(range(20))
    fr = random_split(ds, [0.5, 0.5])
    assert [len(s) for s in fr] == [10, 10]
    s = Subset(ds, [3, 1])
    assert s[0][1].item() == 3.0
    with pytest.raises(ValueError):
        random_split(ds, [5, 5])


def test_bad_arguments():
    _, _, ds = make()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError):
        TensorDataset([1, 2, 3])
