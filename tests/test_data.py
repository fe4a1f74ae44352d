import json

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data import (balanced_indices, compute_normalization, label_subset, load_dataset,
                          lookup_normalization, normalize)
from distill.data import sources as sources_mod
from distill.errors import DataError


def test_sample_loads_offline_balanced():
    train = load_dataset("sample", split="train")
    test = load_dataset("sample", split="test")
    assert train.images.dtype == torch.uint8 and tuple(train.images.shape) == (4000, 3, 32, 32)
    assert len(test) == 1000 and train.num_classes == 10 and train.classes[0] == "airplane"
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    # not degenerate: real images vary
    assert train.images.float().std() > 40


def test_sample_matches_the_official_cifar10_images(cifar10_root):
    meta = json.loads((sources_mod.SAMPLE_DIR / "meta.json").read_text())
    full = load_dataset("cifar10", cifar10_root, "train")
    sample = load_dataset("sample", split="train")
    idx = torch.tensor(meta["splits"]["train"]["official_index"])
    assert torch.equal(full.images[idx], sample.images) and torch.equal(full.labels[idx], sample.labels)


def test_sample_normalization_table_matches_its_images():
    ds = load_dataset("sample")
    mean, std = compute_normalization(ds.images)
    tab_mean, tab_std = lookup_normalization("sample")
    assert np.allclose(mean, tab_mean, atol=2e-4) and np.allclose(std, tab_std, atol=2e-4)
    assert ds.mean == tuple(tab_mean)


def test_normalize_and_float_view(sample_set):
    x = sample_set.float(torch.arange(64))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    z = normalize(sample_set.float(), sample_set.mean, sample_set.std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_resize_and_batches(sample_set):
    ds = load_dataset("sample", split="test", image_size=64)
    assert tuple(ds.images.shape[1:]) == (3, 64, 64)
    seen = torch.cat([y for _, y in sample_set.batches(512, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(seen.sort().values, sample_set.labels.sort().values)


def _write_npz(path, nhwc=True, n=12, size=16):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 3
    arrays = {"x_train": x if nhwc else x.transpose(0, 3, 1, 2), "y_train": y, "x_test": x[:4], "y_test": y[:4],
              "classes": np.array(["a", "b", "c"])}
    np.savez(path, **arrays)
    return x, y


@pytest.mark.parametrize("nhwc", [True, False])
def test_npz_source(tmp_path, nhwc):
    x, y = _write_npz(tmp_path / "d.npz", nhwc)
    ds = load_dataset("npz", tmp_path / "d.npz")
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.labels.tolist() == y.tolist() and ds.classes == ["a", "b", "c"]


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=20):
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")


def test_imagefolder_resizes_and_caches(tmp_path, monkeypatch):
    _write_folder(tmp_path / "ds")
    ds = load_dataset("imagefolder", tmp_path / "ds", "train", image_size=16)
    assert tuple(ds.images.shape) == (6, 3, 16, 16) and ds.classes == ["cat", "dog"]
    test = load_dataset("imagefolder", tmp_path / "ds", "test", image_size=16)  # falls back to val/
    assert len(test) == 6
    # the second load comes from the tensor cache: the decoder is not called again
    calls = []
    monkeypatch.setattr(sources_mod, "decode_files", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    again = load_dataset("imagefolder", tmp_path / "ds", "train", image_size=16)
    assert calls == [] and torch.equal(again.images, ds.images)


def test_imagefolder_needs_size(tmp_path):
    _write_folder(tmp_path / "ds")
    with pytest.raises(DataError, match="image size"):
        load_dataset("imagefolder", tmp_path / "ds", "train", cache=False)


def test_cub_dogs_tiny_layouts(tmp_path):
    from scipy.io import savemat
    img = Image.fromarray(np.full((10, 12, 3), 100, np.uint8))
    # CUB-200-2011
    cub = tmp_path / "CUB_200_2011"
    (cub / "images" / "001.A").mkdir(parents=True)
    (cub / "images" / "002.B").mkdir(parents=True)
    names = ["001.A/a.jpg", "001.A/b.jpg", "002.B/c.jpg"]
    for n in names:
        img.save(cub / "images" / n)
    (cub / "images.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (cub / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (cub / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (cub / "classes.txt").write_text("1 001.A\n2 002.B\n")
    tr = load_dataset("cub200", tmp_path, "train", image_size=8)
    assert tr.labels.tolist() == [0, 1] and tr.classes == ["001.A", "002.B"] and tr.image_size == 8
    assert load_dataset("cub200", tmp_path, "test", image_size=8).labels.tolist() == [0]
    # Stanford Dogs
    dogs = tmp_path / "dogs"
    for b in ("n1-Chihuahua", "n2-Pug"):
        (dogs / "Images" / b).mkdir(parents=True)
        img.save(dogs / "Images" / b / "x.jpg")
    savemat(dogs / "train_list.mat", {"file_list": np.array([["n1-Chihuahua/x.jpg"], ["n2-Pug/x.jpg"]], dtype=object)})
    savemat(dogs / "test_list.mat", {"file_list": np.array([["n2-Pug/x.jpg"]], dtype=object)})
    d = load_dataset("stanford_dogs", dogs, "train", image_size=8)
    assert d.labels.tolist() == [0, 1] and d.classes == ["Chihuahua", "Pug"]
    # Tiny ImageNet
    tiny = tmp_path / "tiny-imagenet-200"
    for w in ("n01", "n02"):
        (tiny / "train" / w / "images").mkdir(parents=True)
        img.save(tiny / "train" / w / "images" / f"{w}_0.JPEG")
    (tiny / "val" / "images").mkdir(parents=True)
    img.save(tiny / "val" / "images" / "val_0.JPEG")
    (tiny / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t1\t1\n")
    (tiny / "wnids.txt").write_text("n01\nn02\n")
    t = load_dataset("tinyimagenet", tmp_path, "train")
    assert t.image_size == 64 and t.labels.tolist() == [0, 1]
    assert load_dataset("tinyimagenet", tmp_path, "test").labels.tolist() == [1]


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(DataError, match="(?s)unknown dataset 'cifar1000'.*cifar100"):
        load_dataset("cifar1000", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar100", tmp_path / "nowhere")
    with pytest.raises(DataError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path)  # root exists, files do not
    with pytest.raises(DataError, match="no split 'valid'"):
        load_dataset("sample", split="valid")
    with pytest.raises(DataError, match="3 channel"):
        load_dataset("sample", channels=1)
    with pytest.raises(DataError, match="needs a root"):
        load_dataset("cifar10")
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("npz", tmp_path / "bad.npz")


def test_label_subsets_are_stratified_and_seeded():
    labels = torch.arange(1000) % 10
    a = label_subset(labels, fraction=0.05, seed=3)
    assert len(a) == 50 and labels[a].bincount().tolist() == [5] * 10
    assert torch.equal(a, label_subset(labels, fraction=0.05, seed=3))
    assert not torch.equal(a, label_subset(labels, fraction=0.05, seed=4))
    b = label_subset(labels, per_class=7, seed=0)
    assert labels[b].bincount().tolist() == [7] * 10
    assert len(label_subset(labels, fraction=0.001)) == 10  # at least one per class
    with pytest.raises(DataError):
        label_subset(labels, per_class=101)
    c = balanced_indices(labels, 25, seed=0)
    assert len(c) == 25 and sorted(labels[c].bincount().tolist()) == [2] * 5 + [3] * 5
    with pytest.raises(DataError, match="cannot cover 10 classes"):
        balanced_indices(labels, 4)
    d = balanced_indices(labels, 4, seed=1, fewer_classes=True)   # random_labelled below the class count
    assert len(d) == 4 and len(set(labels[d].tolist())) == 4
    assert not torch.equal(labels[d], labels[balanced_indices(labels, 4, seed=2, fewer_classes=True)])


@pytest.mark.realdata
@pytest.mark.slow         # real CIFAR-100 through the loader real CIFAR-10 takes in the fast suite (test above)
def test_real_cifar100_loads(cifar_root):
    tr = load_dataset("cifar100", cifar_root, "train")
    te = load_dataset("cifar100", cifar_root, "test")
    assert tuple(tr.images.shape) == (50000, 3, 32, 32) and len(te) == 10000
    assert tr.num_classes == 100 and tr.labels.bincount().tolist() == [500] * 100
    mean, std = compute_normalization(tr.images)
    assert np.allclose(mean, tr.mean, atol=1e-3) and np.allclose(std, tr.std, atol=1e-3)
    # root may also point at the inner folder
    assert len(load_dataset("cifar100", cifar_root / "cifar-100-python", "test")) == 10000
