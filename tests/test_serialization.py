"""save/load: npz + JSON metadata, atomic writes, refusal of pickles and corrupt files."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim


def test_state_dict_roundtrip(tmp_path):
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    path = tmp_path / "model.pt"
    fastmlp.save(net.state_dict(), path)
    assert path.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    sd = fastmlp.load(path)
    assert list(sd) == list(net.state_dict())
    net2 = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    net2.load_state_dict(sd)
    for (k, a), (_, b) in zip(net.state_dict().items(), net2.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert b.dtype == fastmlp.float32


def test_nested_checkpoint_with_optimizer(tmp_path):
    net = nn.Linear(2, 2)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(fastmlp.ones(3, 2)).sum().backward()
    opt.step()
    ckpt = {"model": net.state_dict(), "optim": opt.state_dict(), "epoch": 3, "note": "hi",
            "hist": [0.5, float("inf")], "pair": (1, None), "arr": np.arange(3)}
    buf = io.BytesIO()
    fastmlp.save(ckpt, buf)
    buf.seek(0)
    back = fastmlp.load(buf)
    assert back["epoch"] == 3 and back["note"] == "hi" and back["hist"] == [0.5, float("inf")]
    assert back["pair"] == (1, None)
    np.testing.assert_array_equal(back["arr"], np.arange(3))
    assert set(back["optim"]["state"]) == {0, 1}  # int keys survive
    opt2 = optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    opt2.load_state_dict(back["optim"])
    assert opt2.param_groups[0]["momentum"] == 0.9
    np.testing.assert_array_equal(back["optim"]["state"][0]["momentum_buffer"].numpy(),
                                  opt.state[net.weight]["momentum_buffer"].numpy())


def test_refuses_pickles_and_garbage(tmp_path):
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="pickle"):
        fastmlp.load(p)
    p.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not a fastmlp file"):
        fastmlp.load(p)
    good = tmp_path / "good.pt"
    fastmlp.save({"w": fastmlp.ones(100)}, good)
    data = good.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        fastmlp.load(p)
    # an npz without our metadata (e.g. a plain numpy file, or an object array) is refused too
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="without fastmlp metadata"):
        fastmlp.load(tmp_path / "plain.npz")
    with zipfile.ZipFile(tmp_path / "torchlike.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="torch.save"):
        fastmlp.load(tmp_path / "torchlike.pt")


def test_object_arrays_are_not_loaded(tmp_path):
    # a crafted file whose entry needs pickle: np.load(allow_pickle=False) must refuse it
    meta = np.frombuffer(b'{"format": 1, "obj": {"__ndarray__": "t0"}}', dtype=np.uint8)
    with open(tmp_path / "obj.pt", "wb") as fh:
        np.savez(fh, __fastmlp__=meta, t0=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):
        fastmlp.load(tmp_path / "obj.pt")


def test_save_errors_leave_old_file(tmp_path):
    path = tmp_path / "m.pt"
    fastmlp.save({"a": fastmlp.ones(2)}, path)
    with pytest.raises(TypeError, match="cannot save"):
        fastmlp.save({"a": object()}, path)
    assert fastmlp.load(path)["a"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]
