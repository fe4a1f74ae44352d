"""Dataset sources: each turns (root, split, image_size) into uint8 images, labels, class names.

Sources register themselves by name; :func:`distill.data.load_dataset` looks them up, adds the
tensor cache and normalisation. No source downloads anything unless ``download=True``.
"""
from __future__ import annotations

import contextlib
import contextvars

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engine.progress import progress
from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")


@dataclass
class RawSplit:
    images: torch.Tensor  # uint8 N x C x H x W
    labels: torch.Tensor  # int64 N, -1 = unlabelled
    classes: list[str]


Reader = Callable[[Path | None, str, "int | None", bool], RawSplit]


@dataclass
class Source:
    name: str
    read: Reader
    splits: tuple[str, ...]
    native_size: int | None  # None: images of varying size, resized on decode
    needs_root: bool = True
    transfer_target: bool = False
    help: str = ""
    fingerprint: Callable[[Path, str], str] | None = None


SOURCES: dict[str, Source] = {}


def register_source(name: str, splits=("train", "test"), native_size: int | None = None, needs_root=True,
                    transfer_target=False, help="", fingerprint=None):
    def deco(fn: Reader) -> Reader:
        SOURCES[name] = Source(name, fn, tuple(splits), native_size, needs_root, transfer_target, help,
                               fingerprint)
        return fn
    return deco


def get_source(name: str) -> Source:
    key = name.lower().replace("-", "_")
    key = {"tiny_imagenet": "tinyimagenet", "cub": "cub200", "cub_200": "cub200", "aircraft": "fgvc_aircraft",
           "cars": "stanford_cars", "dogs": "stanford_dogs", "flowers": "flowers102", "folder": "imagefolder",
           "image_folder": "imagefolder"}.get(key, key)
    if key not in SOURCES:
        raise DataError(f"unknown dataset '{name}'", fix=f"use one of: {', '.join(sorted(SOURCES))}")
    return SOURCES[key]


# --------------------------------------------------------------------------- helpers


#: how the running command takes a dataset's root; commands set it (``root_option``) so that hints
#: name the option the user actually has (``data.root=``, ``--root``, ``--targets NAME:ROOT``, ...)
_ROOT_OPTION: contextvars.ContextVar[str] = contextvars.ContextVar("root_option", default="data.root=ROOT")


@contextlib.contextmanager
def root_option(how: str):
    """Within the block, data errors tell the user to give the root with ``how`` (e.g. ``--root ROOT``)."""
    token = _ROOT_OPTION.set(how)
    try:
        yield
    finally:
        _ROOT_OPTION.reset(token)


def _give_root(what: str = "the folder holding it") -> str:
    return f"give {what} with {_ROOT_OPTION.get()}"


def _require_dir(root: Path | None, source: str, expect: str, fix: str) -> Path:
    if root is None:
        raise DataError(f"dataset '{source}' needs a root folder", fix=f"{_give_root()}; {fix}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist ({source} expects {expect})", fix=fix)
    return root


def _pil_to_uint8(img, size: int | None) -> np.ndarray:
    from PIL import Image
    img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def decode_files(paths: list[Path], size: int | None, desc: str) -> torch.Tensor:
    """Decode image files (threaded; PIL releases the GIL) into a uint8 N x 3 x size x size tensor."""
    from PIL import Image, UnidentifiedImageError

    if size is None:
        raise DataError(f"{desc}: images of varying size need an image size",
                        fix="pass --image-size (or data.image_size=...)")

    def one(p):
        try:
            with Image.open(p) as im:
                return _pil_to_uint8(im, size)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot decode image {p}: {e}") from None

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2))) as pool:
        for i, arr in enumerate(progress(pool.map(one, paths), total=len(paths), desc=f"decode {desc}")):
            out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _from_pil_dataset(ds, size: int | None, desc: str, label_of=lambda t: t) -> RawSplit:
    """Decode a torchvision dataset yielding (PIL image, target)."""
    if size is None:
        raise DataError(f"{desc}: images of varying size need an image size", fix="pass --image-size")
    imgs = np.empty((len(ds), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(ds), dtype=np.int64)
    for i in progress(range(len(ds)), desc=f"decode {desc}"):
        im, t = ds[i]
        imgs[i] = _pil_to_uint8(im, size)
        labels[i] = label_of(t)
    classes = [str(c) for c in getattr(ds, "classes", [])] or [str(i) for i in range(int(labels.max()) + 1)]
    return RawSplit(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels), classes)


def _stat_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{int(st.st_mtime)};".encode())
        except OSError:
            h.update(f"{p}:missing;".encode())
    return h.hexdigest()[:16]


def tree_fingerprint(root: Path, split: str) -> str:
    """Change detector for folder datasets: path, size and modification time (ns) of every file below
    ``root`` (all depths), so an image overwritten in place or added in a nested folder invalidates
    the cache. One ``stat`` per file: about a second for 100k images."""
    root = Path(root)
    h = hashlib.sha1()
    if not root.is_dir():
        return _stat_fingerprint([root])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
                h.update(f"{os.path.relpath(p, root)}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(f"{p}:missing;".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- CIFAR, STL-10


def _torchvision_error(source: str, root: Path, folder: str, e: Exception) -> DataError:
    return DataError(f"{source} not found or incomplete under {root} (expected {root / folder}/ in torchvision's "
                     f"format): {str(e).splitlines()[0]}",
                     fix=f"{_give_root()}; where you are online, fetch it once with `ssdd data prepare {source} "
                         f"--root ROOT --download` (torchvision's download), or copy torchvision's layout there")


def _cifar(cls_name: str, folder: str, source: str):
    def read(root, split, size, download):
        import torchvision
        root = _require_dir(root, source, f"{folder}/", f"expected ROOT/{folder}/ in torchvision's layout; where you are online, "
                             f"`ssdd data prepare {source} --root ROOT --download` fetches it")
        if root.name == folder:  # the user pointed at the inner folder
            root = root.parent
        if not (root / folder).is_dir() and not download:
            raise _torchvision_error(source, root, folder, FileNotFoundError(f"no folder {folder}"))
        try:
            ds = getattr(torchvision.datasets, cls_name)(root=str(root), train=(split == "train"), download=download)
        except RuntimeError as e:
            raise _torchvision_error(source, root, folder, e) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return RawSplit(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes))
    return read


register_source("cifar10", native_size=32, help="CIFAR-10 in torchvision's format (cifar-10-batches-py/)",
                fingerprint=lambda r, s: _stat_fingerprint(sorted((Path(r) / "cifar-10-batches-py").glob("*"))))(
    _cifar("CIFAR10", "cifar-10-batches-py", "cifar10"))
register_source("cifar100", native_size=32, help="CIFAR-100 in torchvision's format (cifar-100-python/)",
                fingerprint=lambda r, s: _stat_fingerprint(sorted((Path(r) / "cifar-100-python").glob("*"))))(
    _cifar("CIFAR100", "cifar-100-python", "cifar100"))


@register_source("stl10", splits=("train", "test", "unlabeled", "train+unlabeled"), native_size=96,
                 help="STL-10 in torchvision's format (stl10_binary/)",
                 fingerprint=lambda r, s: _stat_fingerprint(sorted((Path(r) / "stl10_binary").glob("*"))))
def _stl10(root, split, size, download):
    import torchvision
    root = _require_dir(root, "stl10", "stl10_binary/", "pass --download to fetch STL-10")
    if root.name == "stl10_binary":
        root = root.parent
    try:
        ds = torchvision.datasets.STL10(root=str(root), split=split, download=download)
    except RuntimeError as e:
        raise _torchvision_error("stl10", root, "stl10_binary", e) from None
    return RawSplit(torch.from_numpy(ds.data.copy()), torch.as_tensor(ds.labels, dtype=torch.int64), list(ds.classes))


# --------------------------------------------------------------------------- folders


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_class_folders(folder: Path, size: int | None, desc: str) -> RawSplit:
    classes = _class_folders(folder)
    if not classes:
        raise DataError(f"{folder} has no class sub-folders", fix="expected FOLDER/<class>/<image files>")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = _images_in(c)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    return RawSplit(decode_files(paths, size, desc), torch.tensor(labels, dtype=torch.int64), [c.name for c in classes])


@register_source("imagefolder", splits=("train", "test", "val"), native_size=None, transfer_target=True,
                 help="any ROOT/<split>/<class>/*.jpg tree (ImageNet subsets, ...)", fingerprint=tree_fingerprint)
def _imagefolder(root, split, size, download):
    root = _require_dir(root, "imagefolder", "ROOT/<split>/<class>/<images>", _give_root("the dataset folder"))
    folder = root / split
    if not folder.is_dir() and split == "test" and (root / "val").is_dir():
        folder = root / "val"
    if not folder.is_dir():
        if split == "train" and _class_folders(root):
            folder = root  # a bare class-per-folder tree
        else:
            raise DataError(f"{root} has no '{split}' folder", fix=f"expected {root}/{split}/<class>/<images>")
    return read_class_folders(folder, size, f"{root.name}/{split}")


def _tiny_root(root: Path) -> Path:
    return root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root


@register_source("tinyimagenet", splits=("train", "test", "val"), native_size=64,
                 help="Tiny ImageNet as unpacked from tiny-imagenet-200.zip (val used as test)",
                 fingerprint=lambda r, s: tree_fingerprint(_tiny_root(Path(r)), s))
def _tinyimagenet(root, split, size, download):
    root = _tiny_root(_require_dir(root, "tinyimagenet", "tiny-imagenet-200/", "unzip tiny-imagenet-200.zip there"))
    wnids_file = root / "wnids.txt"
    if not wnids_file.exists():
        raise DataError(f"{root} is not a Tiny ImageNet folder (no wnids.txt)", fix=_give_root("tiny-imagenet-200/"))
    wnids = wnids_file.read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    if split == "train":
        for w in wnids:
            files = _images_in(root / "train" / w)
            paths += files
            labels += [index[w]] * len(files)
    else:
        ann = root / "val" / "val_annotations.txt"
        if not ann.exists():
            raise DataError(f"{ann} is missing", fix="the val split needs val/val_annotations.txt")
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                paths.append(root / "val" / "images" / parts[0])
                labels.append(index[parts[1]])
    words = {}
    if (root / "words.txt").exists():
        for line in (root / "words.txt").read_text().splitlines():
            k, _, v = line.partition("\t")
            words[k] = v.split(",")[0]
    return RawSplit(decode_files(paths, size or 64, f"tinyimagenet/{split}"), torch.tensor(labels),
                    [words.get(w, w) for w in wnids])


# --------------------------------------------------------------------------- arrays


@register_source("npz", splits=("train", "test"), native_size=None,
                 help="a .npz file with x_<split> (N x H x W x C or N x C x H x W uint8), y_<split>, optional classes",
                 fingerprint=lambda r, s: _stat_fingerprint([Path(r)]))
def _npz(root, split, size, download):
    if root is None:
        raise DataError("dataset 'npz' needs the path of a .npz file", fix=_give_root("the .npz file"))
    path = Path(root).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            raise DataError(f"{path} is a folder with {len(found)} .npz files", fix=_give_root("the .npz file"))
        path = found[0]
    if not path.exists():
        raise DataError(f"{path} does not exist", fix=_give_root("a .npz file with x_train, y_train, ..."))
    try:
        with np.load(path, allow_pickle=False) as z:
            if f"x_{split}" not in z.files:
                raise DataError(f"{path} has no array 'x_{split}' (it has: {', '.join(z.files)})")
            x = z[f"x_{split}"]
            y = z[f"y_{split}"] if f"y_{split}" in z.files else np.full(len(x), -1)
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in z["classes"]] if "classes" in z.files else []
    except (ValueError, OSError) as e:
        raise DataError(f"cannot read {path} as a numpy .npz archive ({e})") from None
    if x.dtype != np.uint8:
        raise DataError(f"{path}: x_{split} is {x.dtype}, expected uint8 images")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise DataError(f"{path}: x_{split} has shape {x.shape}; expected N x H x W x C or N x C x H x W, square")
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if not classes and (y >= 0).any():
        classes = [str(i) for i in range(int(y.max()) + 1)]
    return RawSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), classes)


# --------------------------------------------------------------------------- transfer targets


def _tv_target(cls_name: str, split_map: dict[str, list[str]], source: str, folder_hint: str, **kw):
    def read(root, split, size, download):
        import torchvision
        root = _require_dir(root, source, folder_hint, f"put {folder_hint} under ROOT (or pass --download)")
        parts = []
        for s in split_map[split]:
            try:
                ds = getattr(torchvision.datasets, cls_name)(root=str(root), split=s, download=download, **kw)
            except (RuntimeError, FileNotFoundError) as e:
                raise DataError(f"{source} not found under {root} (expected {folder_hint}): {str(e).splitlines()[0]}",
                                fix=f"{_give_root()}, or pass --download") from None
            parts.append(_from_pil_dataset(ds, size, f"{source}/{s}"))
        if len(parts) == 1:
            return parts[0]
        return RawSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), parts[0].classes)
    return read


register_source("fgvc_aircraft", native_size=None, transfer_target=True, help="FGVC-Aircraft (torchvision format)",
                fingerprint=tree_fingerprint)(
    _tv_target("FGVCAircraft", {"train": ["trainval"], "test": ["test"]}, "fgvc_aircraft", "fgvc-aircraft-2013b/",
               annotation_level="variant"))
register_source("stanford_cars", native_size=None, transfer_target=True, help="Stanford Cars (torchvision format)",
                fingerprint=tree_fingerprint)(
    _tv_target("StanfordCars", {"train": ["train"], "test": ["test"]}, "stanford_cars", "stanford_cars/"))
register_source("flowers102", native_size=None, transfer_target=True,
                help="Flowers-102 (torchvision format; train = official train + val)", fingerprint=tree_fingerprint)(
    _tv_target("Flowers102", {"train": ["train", "val"], "test": ["test"]}, "flowers102", "flowers-102/"))


@register_source("cub200", native_size=None, transfer_target=True,
                 help="CUB-200-2011 as unpacked (images/, images.txt, train_test_split.txt, ...)",
                 fingerprint=tree_fingerprint)
def _cub200(root, split, size, download):
    root = _require_dir(root, "cub200", "CUB_200_2011/", "unpack CUB_200_2011.tgz there")
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    need = ["images.txt", "image_class_labels.txt", "train_test_split.txt"]
    missing = [n for n in need if not (root / n).exists()]
    if missing:
        raise DataError(f"{root} is not a CUB-200-2011 folder (missing {', '.join(missing)})",
                        fix=_give_root("CUB_200_2011/ (with images/ and the .txt index files)"))

    def table(name):
        return dict(line.split(maxsplit=1) for line in (root / name).read_text().splitlines() if line.strip())
    files, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    want = "1" if split == "train" else "0"
    ids = sorted((k for k in files if is_train[k].strip() == want), key=int)
    paths = [root / "images" / files[k].strip() for k in ids]
    y = torch.tensor([int(labels[k]) - 1 for k in ids])
    if (root / "classes.txt").exists():
        classes = [v.strip() for _, v in sorted(table("classes.txt").items(), key=lambda kv: int(kv[0]))]
    else:
        classes = [str(i) for i in range(200)]
    return RawSplit(decode_files(paths, size, f"cub200/{split}"), y, classes)


@register_source("stanford_dogs", native_size=None, transfer_target=True,
                 help="Stanford Dogs as unpacked (Images/<breed>/, train_list.mat, test_list.mat)",
                 fingerprint=tree_fingerprint)
def _stanford_dogs(root, split, size, download):
    from scipy.io import loadmat
    root = _require_dir(root, "stanford_dogs", "Images/ + train_list.mat", "unpack images.tar and lists.tar there")
    lst = root / f"{'train' if split == 'train' else 'test'}_list.mat"
    if not (root / "Images").is_dir() or not lst.exists():
        raise DataError(f"{root} is not a Stanford Dogs folder (needs Images/ and {lst.name})",
                        fix="unpack images.tar and lists.tar into one folder")
    breeds = [p.name for p in _class_folders(root / "Images")]
    index = {b: i for i, b in enumerate(breeds)}
    mat = loadmat(str(lst))
    rel = [str(np.asarray(f).reshape(-1)[0]) for f in mat["file_list"].reshape(-1)]
    paths = [root / "Images" / r for r in rel]
    y = torch.tensor([index[r.split("/")[0]] for r in rel])
    names = [b.split("-", 1)[-1].replace("_", " ") for b in breeds]
    return RawSplit(decode_files(paths, size, f"stanford_dogs/{split}"), y, names)


# --------------------------------------------------------------------------- the embedded sample

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def read_mosaic(path: Path, count: int, tile: int, cols: int, channels: int = 3) -> torch.Tensor:
    """A lossless mosaic of ``count`` tiles (row-major, ``cols`` per row) -> uint8 N x C x t x t."""
    from PIL import Image
    with Image.open(path) as im:
        m = np.asarray(im.convert("RGB" if channels == 3 else "L"))
    rows = -(-count // cols)
    if m.shape[0] != rows * tile or m.shape[1] != cols * tile:
        raise DataError(f"{path}: mosaic is {m.shape[:2]}, expected {(rows * tile, cols * tile)}; the sample is damaged",
                        fix="reinstall the package or rebuild it with scripts/build_sample.py")
    m = m.reshape(rows, tile, cols, tile, channels).transpose(0, 2, 4, 1, 3).reshape(rows * cols, channels, tile, tile)
    return torch.from_numpy(np.ascontiguousarray(m[:count]))


@register_source("sample", native_size=32, needs_root=False,
                 help="embedded CIFAR-10 subset shipped with the package (works offline)")
def _sample(root, split, size, download):
    meta_path = SAMPLE_DIR / "meta.json"
    if not meta_path.exists():
        raise DataError(f"the embedded sample is missing ({meta_path})", fix="rebuild it with scripts/build_sample.py")
    meta = json.loads(meta_path.read_text())
    if split not in meta["splits"]:
        raise DataError(f"the sample has no split '{split}'", fix=f"use one of {', '.join(meta['splits'])}")
    info = meta["splits"][split]
    images = read_mosaic(SAMPLE_DIR / info["file"], info["count"], meta["tile"], info["cols"])
    return RawSplit(images, torch.tensor(info["labels"], dtype=torch.int64), list(meta["classes"]))
