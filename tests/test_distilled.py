import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from distill.distilled import DistilledSet
from distill.errors import FileFormatError, UserError


def make_set(n=6, with_bases=False, **extra):
    g = torch.Generator().manual_seed(0)
    meta = dict(method="krr_st", source="sample", image_size=8, channels=3, mean=[0.5, 0.4, 0.3],
                std=[0.2, 0.2, 0.2], num_classes=4, seed=1, config={"lr": 1e-4})
    kw = dict(targets=torch.randn(n, 5, generator=g), labels=torch.arange(n) % 4,
              soft_labels=torch.randn(n, 4, generator=g), lr=torch.tensor(0.1))
    if with_bases:
        kw.update(image_bases=torch.randn(3, 3, 4, 4, generator=g), image_coeffs=torch.randn(n, 3, generator=g))
        kw["targets"] = None
        kw.update(target_bases=torch.randn(2, 5, generator=g), target_coeffs=torch.randn(n, 2, generator=g))
    else:
        kw["images"] = torch.rand(n, 3, 8, 8, generator=g) * 1.4 - 0.2  # methods may leave [0, 1]
    kw.update(extra)
    return DistilledSet(**kw, meta=meta)


@pytest.mark.parametrize("with_bases", [False, True])
def test_roundtrip_is_bit_exact(tmp_path, with_bases):
    ds = make_set(with_bases=with_bases)
    path = ds.save(tmp_path / "s.safetensors")
    back = DistilledSet.load(path)
    assert set(back.tensors()) == set(ds.tensors())
    for k, t in ds.tensors().items():
        assert torch.equal(back.tensors()[k], t) and back.tensors()[k].dtype == t.dtype
    assert back.meta["config"] == {"lr": 1e-4} and back.meta["seed"] == 1 and back.method == "krr_st"
    assert back.storage_bytes() == ds.storage_bytes()


def test_materialize_expands_bases():
    ds = make_set(with_bases=True)
    m = ds.materialize()
    low = (ds.image_coeffs @ ds.image_bases.flatten(1)).view(6, 3, 4, 4)
    ref = torch.nn.functional.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(m.images, ref) and torch.allclose(m.targets, ds.target_coeffs @ ds.target_bases)
    assert m.lr == pytest.approx(0.1)


def test_storage_accounting():
    ds = make_set()
    expected = 6 * 3 * 8 * 8 * 4 + 6 * 5 * 4 + 6 * 8 + 6 * 4 * 4 + 4
    assert ds.storage_bytes() == expected
    assert ds.image_equivalents() == pytest.approx(expected / (3 * 8 * 8 * 4))
    b = make_set(with_bases=True)
    assert b.storage_bytes() == (3 * 3 * 4 * 4 + 6 * 3 + 2 * 5 + 6 * 2 + 6 * 4) * 4 + 6 * 8 + 4


def test_pickles_and_torch_save_are_refused(tmp_path):
    p = tmp_path / "a.safetensors"
    p.write_bytes(pickle.dumps(make_set().tensors(), protocol=4))
    with pytest.raises(FileFormatError, match="pickle"):
        DistilledSet.load(p)
    q = tmp_path / "b.safetensors"
    torch.save(make_set().tensors(), q)
    with pytest.raises(FileFormatError, match="zip archive"):
        DistilledSet.load(q)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    good = make_set().save(tmp_path / "good.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[: len(good) - 100])
    with pytest.raises(FileFormatError, match="truncated"):
        DistilledSet.load(cut)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 20) + b"{not json at all!!!}")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        DistilledSet.load(garbage)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty or truncated"):
        DistilledSet.load(tmp_path / "empty.safetensors")


def test_foreign_safetensors_and_bad_headers(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(FileFormatError, match="not an ssdd"):
        DistilledSet.load(foreign)
    other_kind = tmp_path / "ck.safetensors"
    save_file({"w": torch.zeros(2)}, str(other_kind), metadata={"ssdd": json.dumps({"format": "ssdd.checkpoint"})})
    with pytest.raises(FileFormatError, match="is a checkpoint .*not a distilled set"):
        DistilledSet.load(other_kind)
    # a header whose shapes disagree with its tensors
    ds = make_set()
    header = ds.header()
    header["image_size"] = 16
    lying = tmp_path / "lying.safetensors"
    save_file({k: v.contiguous() for k, v in ds.tensors().items()}, str(lying), metadata={"ssdd": json.dumps(header)})
    with pytest.raises(FileFormatError, match="header says 3 x 16 x 16"):
        DistilledSet.load(lying)
    header = ds.header()
    header["version"] = 99
    newer = tmp_path / "newer.safetensors"
    save_file({k: v.contiguous() for k, v in ds.tensors().items()}, str(newer), metadata={"ssdd": json.dumps(header)})
    with pytest.raises(FileFormatError, match="version 99"):
        DistilledSet.load(newer)


def test_invalid_sets_are_not_written(tmp_path):
    bad = make_set(targets=torch.randn(5, 5))  # 6 images, 5 targets
    with pytest.raises(FileFormatError, match="'targets' must be 6 x D"):
        bad.save(tmp_path / "bad.safetensors")
    nan = make_set()
    nan.images[0, 0, 0, 0] = float("nan")
    with pytest.raises(FileFormatError, match="NaN"):
        nan.save(tmp_path / "nan.safetensors")
    with pytest.raises(UserError, match=".safetensors"):
        make_set().save(tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []
