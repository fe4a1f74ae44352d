"""The resume contract, for every registered method and every stage: a run stopped after a
checkpoint and resumed ends bit-identical to an uninterrupted one, and its file validates."""
import pytest
import torch

from distill.data.config import DataConfig
from distill.engine import load_checkpoint, load_record, save_checkpoint
from distill.engine.configdiff import config_differences
from distill.engine.stage import checkpoint_path
from distill.errors import UserError
from distill.methods import METHODS, DistillConfig, run_distillation
from distill.ssl import TeacherConfig, train_teacher

from .helpers import small_npz, small_source, tiny_teacher

STEPS = 4


def _distill_cfg(folder, method, extra_params=None, **kw):
    steps = STEPS if METHODS[method].default_steps else 0
    params = {**METHODS[method].tiny_params, **(extra_params or {})}
    base = dict(data=DataConfig(name="sample"), method=method, budget=10, steps=steps, seed=3, checkpoint_every=1,
                log_every=1, params=params, output=str(folder / f"{method}.safetensors"))
    base.update(kw)
    return DistillConfig(**base)


def _teacher_cfg(folder, **kw):
    data = folder.parent / "small.npz"
    if not data.exists():
        small_npz(data, train_per_class=20, test_per_class=5)
    base = dict(data=DataConfig(name="npz", root=str(data)), backbone="convnet-d2-w8-bn", epochs=2, batch_size=50,
                projector_hidden=32, projector_dim=32, warmup_epochs=1, knn_k=5, checkpoint_every=1,
                output=str(folder / "teacher.safetensors"))
    base.update(kw)
    return TeacherConfig(**base)


def _same_tensors(a, b):
    ta, tb = a.tensors(), b.tensors()
    assert set(ta) == set(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_resumes_bit_identically(tmp_path, method):
    src, teacher = small_source(6), None
    teacher = tiny_teacher(source=src)
    extra = METHODS[method].tiny_setup(tmp_path, src, teacher)   # files the method reads (MKDT's experts)
    full = run_distillation(_distill_cfg(tmp_path / "full", method, extra), teacher=teacher, source=src)
    split = _distill_cfg(tmp_path / "split", method, extra)
    stop = 2 if split.steps else 0
    part = run_distillation(split, teacher=teacher, source=src, stop_after=stop)
    if split.steps:   # a method with steps leaves a checkpoint and no set
        assert part.set is None and part.path == checkpoint_path(split.output) and part.path.exists()
        assert not (tmp_path / "split" / f"{method}.safetensors").exists()
        resumed = run_distillation(split, teacher=teacher, source=src, resume=True)
    else:             # a selection without steps finishes at once; rerunning it gives the same set
        resumed = part
    _same_tensors(full.set, resumed.set)
    assert not checkpoint_path(split.output).exists()
    back = load_record(resumed.path)
    assert back.method == method and back.meta["steps"] == split.steps
    _same_tensors(back, full.set)


def test_teacher_stage_resumes_bit_identically(tmp_path):
    full = train_teacher(_teacher_cfg(tmp_path / "full"))
    assert train_teacher(_teacher_cfg(tmp_path / "split"), stop_after=1) is None
    resumed = train_teacher(_teacher_cfg(tmp_path / "split"), resume=True)
    _same_tensors(full.teacher, resumed.teacher)
    assert load_record(resumed.path).id == full.teacher.id


def test_resume_refuses_a_changed_config_and_names_the_key(tmp_path):
    src = small_source(6)
    teacher = tiny_teacher(source=src)
    cfg = _distill_cfg(tmp_path, "krr_st")
    run_distillation(cfg, teacher=teacher, source=src, stop_after=2)
    with pytest.raises(UserError, match=r"budget=10.*budget=20") as e:
        run_distillation(_distill_cfg(tmp_path, "krr_st", budget=20), teacher=teacher, source=src, resume=True)
    assert "delete" in str(e.value)
    with pytest.raises(UserError, match=r"params.pool_size=2.*params.pool_size=3"):
        run_distillation(_distill_cfg(tmp_path, "krr_st", params={**cfg.params, "pool_size": 3}), teacher=teacher,
                         source=src, resume=True)
    with pytest.raises(UserError, match="checkpoint of 'distill/krr_st', not of 'distill/random'"):
        run_distillation(_distill_cfg(tmp_path, "random", output=cfg.output), teacher=teacher, source=src, resume=True)
    # how often to log or checkpoint may change; the result is still the uninterrupted one
    resumed = run_distillation(_distill_cfg(tmp_path, "krr_st", log_every=2, checkpoint_every=0), teacher=teacher,
                               source=src, resume=True)
    full = run_distillation(_distill_cfg(tmp_path / "full", "krr_st"), teacher=teacher, source=src)
    _same_tensors(full.set, resumed.set)


def test_teacher_resume_refuses_other_epochs(tmp_path):
    train_teacher(_teacher_cfg(tmp_path), stop_after=1)
    with pytest.raises(UserError, match="epochs=2.*epochs=3"):
        train_teacher(_teacher_cfg(tmp_path, epochs=3), resume=True)
    with pytest.raises(UserError, match="backbone='convnet-d2-w8-bn'.*backbone='convnet-d2-w16-bn'"):
        train_teacher(_teacher_cfg(tmp_path, backbone="convnet-d2-w16-bn"), resume=True)


def test_checkpoints_of_the_previous_release_still_resume(tmp_path):
    """Release 0.1 wrote {"method", "rng", "step"} with meta {"method", "config"}; amp was a bool."""
    src = small_source(6)
    teacher = tiny_teacher(source=src)
    cfg = _distill_cfg(tmp_path, "krr_st")
    run_distillation(cfg, teacher=teacher, source=src, stop_after=2)
    ck = checkpoint_path(cfg.output)
    state = load_checkpoint(ck)
    meta = state.pop("__meta__")
    old_config = dict(meta["config"], amp=True)
    save_checkpoint(ck, {"method": state["stage"], "rng": state["rng"], "step": state["step"]},
                    meta={"method": "krr_st", "config": old_config})
    resumed = run_distillation(cfg, teacher=teacher, source=src, resume=True)
    full = run_distillation(_distill_cfg(tmp_path / "full", "krr_st"), teacher=teacher, source=src)
    _same_tensors(full.set, resumed.set)


def test_config_differences():
    old = {"budget": 10, "log_every": 5, "data": {"root": "/a", "name": "x"}, "amp": True}
    new = {"budget": 10, "log_every": 9, "data": {"root": "/b", "name": "y"}, "amp": "auto", "extra": 1}
    assert config_differences(old, new) == [("data.name", "x", "y"), ("extra", "<absent>", 1)]
    assert config_differences(old, new, mutable=("data", "extra")) == []


def test_a_time_limit_stops_with_a_checkpoint_and_resumes_bit_identically(tmp_path):
    src = small_source(6)
    teacher = tiny_teacher(source=src)
    full = run_distillation(_distill_cfg(tmp_path / "full", "krr_st", steps=6), teacher=teacher, source=src)
    split = _distill_cfg(tmp_path / "split", "krr_st", steps=6, checkpoint_every=0)
    part = run_distillation(split, teacher=teacher, source=src, time_limit=0)   # stops after the first step
    assert part.set is None and part.steps == 1 and part.path.exists()
    assert load_checkpoint(part.path)["step"] == 1
    resumed = run_distillation(split, teacher=teacher, source=src, resume=True)
    _same_tensors(full.set, resumed.set)
