"""One record base for every file: shared header keys, old files, wrong kinds, `ssdd info` on each."""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from distill.classifier import Classifier
from distill.cli import cli
from distill.distilled import DistilledSet
from distill.engine import RECORD_KINDS, load_record, save_checkpoint
from distill.errors import FileFormatError, UserError
from distill.models import create_model
from distill.ssl import Teacher

from .helpers import TINY, tiny_teacher


def _old_file(path, tensors, header):
    """A file as release 0.1 wrote it (no created/code_version; backbone / in_chans keys)."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"ssdd": json.dumps(header)})
    return path


def test_every_kind_is_registered():
    assert {"ssdd.distilled", "ssdd.teacher", "ssdd.classifier", "ssdd.checkpoint"} <= set(RECORD_KINDS)


def test_teacher_header_has_the_shared_keys_and_round_trips(tmp_path):
    t = tiny_teacher()
    path = t.save(tmp_path / "t.safetensors")
    header = json.loads(__import__("safetensors").safe_open(str(path), "pt").metadata()["ssdd"])
    for key in ("format", "version", "arch", "image_size", "channels", "mean", "std", "created", "code_version", "id"):
        assert key in header, key
    assert "backbone" not in header and "in_chans" not in header
    back = load_record(path)
    assert isinstance(back, Teacher) and back.id == t.id and back.arch == t.arch
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(back.encode(x), t.encode(x))


def test_files_of_the_previous_release_still_load(tmp_path):
    m = create_model(TINY, out_dim=0, image_size=32)
    old_teacher = _old_file(tmp_path / "t.safetensors", m.state_dict(), {
        "format": "ssdd.teacher", "version": 1, "backbone": TINY, "image_size": 32, "in_chans": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3, "id": "abc"})
    t = Teacher.load(old_teacher)
    assert t.arch == TINY and t.channels == 3 and "backbone" not in t.meta and "in_chans" not in t.meta
    c = create_model(TINY, out_dim=7, image_size=32)
    old_clf = _old_file(tmp_path / "c.safetensors", c.state_dict(), {
        "format": "ssdd.classifier", "version": 1, "arch": TINY, "num_classes": 7, "image_size": 32, "in_chans": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3})
    clf = Classifier.load(old_clf)
    assert clf.num_classes == 7 and clf.channels == 3
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(clf.model.eval()(x), c.eval()(x))


def test_wrong_kind_names_both_kinds(tmp_path):
    t = tiny_teacher().save(tmp_path / "t.safetensors")
    with pytest.raises(FileFormatError, match=r"is a teacher \('ssdd.teacher'\), not a distilled set"):
        DistilledSet.load(t)
    ck = save_checkpoint(tmp_path / "ck.safetensors", {"step": 1})
    with pytest.raises(FileFormatError, match="is a checkpoint .*not a classifier"):
        Classifier.load(ck)


def test_model_records_validate_their_header(tmp_path):
    m = create_model(TINY, out_dim=0, image_size=32)
    good = {"format": "ssdd.teacher", "version": 1, "arch": TINY, "image_size": 32, "channels": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3}
    for bad, msg in [({"arch": "convnet99"}, "cannot build"), ({"mean": [float("nan")] * 3}, "finite numbers"),
                     ({"channels": 0}, "positive integers"), ({"version": 7}, "version 7"),
                     ({"image_size": True}, "positive integers")]:
        path = _old_file(tmp_path / "t.safetensors", m.state_dict(), {**good, **bad})
        with pytest.raises(FileFormatError, match=msg):
            Teacher.load(path)
    other = create_model("convnet-d2-w16-bn", out_dim=0, image_size=32)
    path = _old_file(tmp_path / "w.safetensors", other.state_dict(), good)
    with pytest.raises(FileFormatError, match="weights do not fit"):
        Teacher.load(path)


def test_save_is_atomic_and_checks_the_suffix(tmp_path):
    t = tiny_teacher()
    with pytest.raises(UserError, match=r"\.safetensors"):
        t.save(tmp_path / "t.pt")
    assert list(tmp_path.iterdir()) == []


def test_info_reads_every_kind(tmp_path):
    t = tiny_teacher().save(tmp_path / "t.safetensors")
    ck = save_checkpoint(tmp_path / "ck.safetensors", {"step": 3}, meta={"stage": "teacher", "config": {"epochs": 2}})
    r = CliRunner().invoke(cli, ["info", str(t)])
    assert r.exit_code == 0 and "teacher" in r.output and "convnet-d2-w16-bn" in r.output
    r = CliRunner().invoke(cli, ["info", str(ck)])
    assert r.exit_code == 0 and "stage            teacher" in r.output and "epochs = 2" in r.output
