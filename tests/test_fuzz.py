"""A seeded fuzz of the file loaders: mutations of valid set, factorised set, teacher, classifier and
checkpoint files each either load as a valid object or raise the toolkit's own error naming the file
-- never a bare TypeError / ValueError / IndexError / OverflowError / RecursionError, never a hang,
never a huge allocation."""
import json
import os
import random
import struct

import pytest
import torch
from click.testing import CliRunner

from distill.classifier import Classifier
from distill.cli import cli
from distill.distilled import DistilledSet
from distill.engine import load_record, save_checkpoint
from distill.errors import UserError
from distill.methods.mkdt.experts import Trajectory
from distill.models import create_model
from distill.ssl import Teacher

from .helpers import TINY, tiny_teacher

N_PER_KIND = 120
HOSTILE = ["x", "", -1, 0, 1, 2.5, True, None, [], [1, 2], {"a": 1}, 10 ** 30, "NaN", "Infinity", "-Infinity",
           "HUGE", "DEEP", [float("nan")] * 3, [True, True, True], [1e308, 1e308, 1e308], 10 ** 12]


def _encode(value) -> str:
    """JSON text of a hostile value; "NaN" etc. are raw JSON constants, HUGE / DEEP raw text."""
    if value in ("NaN", "Infinity", "-Infinity"):
        return value
    if value == "HUGE":
        return "9" * 5000
    if value == "DEEP":
        return "[" * 100_000 + "]" * 100_000
    return json.dumps(value)


def _split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(index_text: str, body: bytes) -> bytes:
    raw = index_text.encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _mutate(data: bytes, rng: random.Random) -> bytes:
    index, body = _split(data)
    header = json.loads(index["__metadata__"]["ssdd"])
    kind = rng.randrange(8)
    if kind == 0:     # a header value replaced by a hostile one (raw JSON text, so NaN / deep / huge survive)
        key = rng.choice(sorted(header))
        header[key] = "@@HOSTILE@@"
        text = json.dumps(header).replace('"@@HOSTILE@@"', _encode(rng.choice(HOSTILE)))
        index["__metadata__"]["ssdd"] = "@@SSDD@@"
        return _join(json.dumps(index).replace('"@@SSDD@@"', json.dumps(text)), body)
    if kind == 1:     # a header key removed
        header.pop(rng.choice(sorted(header)))
        index["__metadata__"]["ssdd"] = json.dumps(header)
        return _join(json.dumps(index), body)
    if kind == 2:     # a tensor entry damaged
        name = rng.choice([k for k in index if k != "__metadata__"])
        field = rng.choice(["data_offsets", "dtype", "shape"])
        index[name][field] = "@@H@@"
        return _join(json.dumps(index).replace('"@@H@@"', _encode(rng.choice(HOSTILE))), body)
    if kind == 3:     # a tensor's shape changed consistently with its bytes (0-dim, 1-D, transposed)
        name = rng.choice([k for k in index if k != "__metadata__"])
        shape = index[name]["shape"]
        n = 1
        for d in shape:
            n *= d
        index[name]["shape"] = rng.choice([[n], [1, n], [n, 1], list(reversed(shape))] + ([[]] if n == 1 else []))
        return _join(json.dumps(index), body)
    if kind == 4:     # metadata of the wrong JSON type
        index["__metadata__"] = rng.choice([["ssdd"], "ssdd", 5, {"ssdd": 5}, {"ssdd": "[1, 2]"}, {"ssdd": "\"s\""}])
        return _join(json.dumps(index), body)
    if kind == 5:     # truncation
        return data[:rng.randrange(len(data))]
    if kind == 6:     # random byte flips in the header
        b = bytearray(data)
        n = struct.unpack("<Q", data[:8])[0]
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(8, 8 + n)] = rng.randrange(256)
        return bytes(b)
    # kind 7: body values scaled to extremes (1e38 coefficients, NaN)
    t = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(0, max(1, len(t) - 4), 4)
        t[i:i + 4] = struct.pack("<f", rng.choice([1e38, float("nan"), float("inf"), -1e38]))
    return _join(json.dumps(index), bytes(t))


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("orig")
    teacher = tiny_teacher()
    g = torch.Generator().manual_seed(0)
    meta = {"method": "krr_st", "image_size": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
            "num_classes": 10}
    files = {
        "set": DistilledSet(images=torch.rand(6, 3, 32, 32, generator=g), targets=torch.randn(6, 4, generator=g),
                            labels=torch.arange(6) % 10, soft_labels=torch.randn(6, 10, generator=g),
                            lr=torch.tensor(0.1), meta=dict(meta)).save(d / "set.safetensors"),
        "factorised": DistilledSet(image_bases=torch.rand(3, 3, 8, 8, generator=g),
                                   image_coeffs=torch.randn(5, 3, generator=g), target_bases=torch.randn(2, 4, generator=g),
                                   target_coeffs=torch.randn(5, 2, generator=g), meta=dict(meta)).save(d / "fac.safetensors"),
        "teacher": teacher.save(d / "teacher.safetensors"),
        "classifier": Classifier(create_model(TINY, out_dim=10, image_size=32),
                                 {"arch": TINY, "num_classes": 10, "image_size": 32, "channels": 3, "mean": [0.5] * 3,
                                  "std": [0.25] * 3}).save(d / "clf.safetensors"),
        "trajectory": _trajectory().save(d / "traj.safetensors"),
        "checkpoint": save_checkpoint(d / "ck.safetensors", {"stage": {"x": torch.ones(3), "opt": {"state": {0: {}}}},
                                                             "step": 2, "rng": (1, 2.5, None)},
                                      meta={"stage": "distill/krr_st", "config": {"budget": 6}}),
    }
    return {k: v.read_bytes() for k, v in files.items()}


def _trajectory() -> Trajectory:
    m = create_model("convnet-d1-w2-in", out_dim=3, image_size=8)
    names = [n for n, _ in m.named_parameters()]
    shapes = [list(p.shape) for _, p in m.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    return Trajectory(torch.stack([flat, flat * 0.5, flat * 0.25]),
                      {"arch": "convnet-d1-w2-in", "out_dim": 3, "image_size": 8, "channels": 3, "mean": [0.5] * 3,
                       "std": [0.25] * 3, "names": names, "shapes": shapes, "epochs": 2, "expert": 0})


LOADERS = {"trajectory": Trajectory.load, "set": DistilledSet.load, "factorised": DistilledSet.load, "teacher": Teacher.load,
           "classifier": Classifier.load, "checkpoint": load_record}


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_mutated_files_load_or_fail_cleanly(tmp_path, originals, kind):
    rng = random.Random(f"fuzz-{kind}")
    path = tmp_path / f"m-{kind}.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(N_PER_KIND):
        path.write_bytes(_mutate(originals[kind], rng))
        for loader in (LOADERS[kind], load_record):
            try:
                obj = loader(path)
            except UserError as e:
                assert str(path) in str(e), f"mutation {i}: the message does not name the file: {e}"
                outcomes["refused"] += 1
                continue
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{kind} mutation {i}: {type(e).__name__}: {str(e)[:200]}")
            outcomes["loaded"] += 1
            if isinstance(obj, DistilledSet):   # what loads is usable: finite, bounded
                m = obj.materialize()
                assert torch.isfinite(m.images).all() and m.images.shape[1:] == (obj.channels, obj.image_size,
                                                                                    obj.image_size)
    assert outcomes["refused"] > N_PER_KIND // 2   # the mutations do bite


def test_info_on_bad_files_is_one_line_and_nonzero(tmp_path, originals):
    rng = random.Random("info")
    for i in range(30):
        path = tmp_path / f"bad{i}.safetensors"
        data = _mutate(originals[rng.choice(sorted(originals))], rng)
        path.write_bytes(data)
        r = CliRunner().invoke(cli, ["info", str(path)])
        assert "Traceback" not in r.output and not isinstance(r.exception, (TypeError, ValueError, IndexError,
                                                                             KeyError, OverflowError, RecursionError))
        if r.exit_code != 0:
            assert r.exit_code == 2 and str(path) in r.output.splitlines()[0], r.output


def test_special_paths_fail_at_once(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    for p, msg in [(fifo, "not a regular file"), (tmp_path, "is a directory"), ("/dev/zero", "not a regular file"),
                   (tmp_path / "none.safetensors", "no such file")]:
        r = CliRunner().invoke(cli, ["info", str(p)])
        assert r.exit_code == 2 and msg in r.output, (p, r.output)


def _set_file(path, header_changes=None, **tensors):
    meta = {"method": "x", "image_size": 4, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    base = dict(images=torch.rand(2, 3, 4, 4), targets=torch.randn(2, 3))
    base.update(tensors)
    base = {k: v for k, v in base.items() if v is not None}
    header = {"format": "ssdd.distilled", "version": 1, **meta, **(header_changes or {})}
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in base.items()}, str(path), metadata={"ssdd": json.dumps(header)})
    return path


@pytest.mark.parametrize("case, header, tensors, message", [
    ("num_classes string", {"num_classes": "ten"}, {}, "num_classes"),
    ("num_classes list", {"num_classes": [10]}, {}, "num_classes"),
    ("num_classes 10**30", {"num_classes": 10 ** 30}, {}, "num_classes"),
    ("num_classes zero", {"num_classes": 0}, {}, "num_classes"),
    ("num_classes bool", {"num_classes": True}, {}, "num_classes"),
    ("mean NaN", {"mean": [float("nan")] * 3}, {}, "finite numbers"),
    ("std inf", {"std": [float("inf")] * 3}, {}, "finite numbers"),
    ("mean booleans", {"mean": [True, False, True]}, {}, "finite numbers"),
    ("0-dim images", {}, {"images": torch.tensor(1.0)}, "4 dimensions"),
    ("0-dim coefficients", {}, {"images": None, "image_bases": torch.rand(2, 3, 2, 2), "image_coeffs": torch.tensor(1.0)},
     "2 dimensions"),
    ("1-D soft labels", {}, {"soft_labels": torch.rand(2)}, "2 dimensions"),
    ("0-dim soft labels", {}, {"soft_labels": torch.tensor(0.5)}, "2 dimensions"),
    ("labels without num_classes", {}, {"labels": torch.tensor([0, 10 ** 9])}, "no 'num_classes'"),
    ("huge factorised image size", {"image_size": 10 ** 12}, {"images": None, "image_bases": torch.rand(2, 3, 2, 2),
                                                             "image_coeffs": torch.rand(2, 2)}, "image_size"),
    ("factors overflowing to inf", {}, {"images": None, "image_bases": torch.full((2, 3, 4, 4), 1e38),
                                       "image_coeffs": torch.full((2, 2), 1e38)}, "NaN or inf"),
])
def test_each_defect_found_by_the_fuzz_is_refused(tmp_path, case, header, tensors, message):
    path = _set_file(tmp_path / "s.safetensors", header, **tensors)
    with pytest.raises(UserError, match=message) as e:
        DistilledSet.load(path)
    assert str(path) in str(e.value)
    r = CliRunner().invoke(cli, ["info", str(path)])
    assert r.exit_code == 2 and str(path) in r.output.splitlines()[0] and "Traceback" not in r.output


def test_hostile_json_in_the_header_is_refused(tmp_path):
    good = _set_file(tmp_path / "g.safetensors").read_bytes()
    for i, (old, new) in enumerate([('"x"', "[" * 100_000 + "]" * 100_000), ('"x"', "9" * 5000),
                                    ('"data_offsets": [', '"data_offsets": ["a", ')]):
        index, body = _split(good)
        text = json.dumps(index)
        if "data_offsets" in old:
            text = text.replace(old, new, 1)
        else:
            index["__metadata__"]["ssdd"] = index["__metadata__"]["ssdd"].replace(old, new)
            text = json.dumps(index)
        p = tmp_path / f"h{i}.safetensors"
        p.write_bytes(_join(text, body))
        with pytest.raises(UserError) as e:
            DistilledSet.load(p)
        assert str(p) in str(e.value)
