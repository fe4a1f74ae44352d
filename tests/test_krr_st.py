import pytest
import torch
from sklearn.kernel_ridge import KernelRidge

from distill.config import DataConfig, DistillConfig
from distill.distilled import DistilledSet
from distill.methods import DistillContext, krr_predict, run_distillation
from distill.methods.krr_st import KRRST, Config

from .helpers import TINY, small_source, tiny_teacher


def test_krr_prediction_equals_sklearn_kernel_ridge():
    g = torch.Generator().manual_seed(0)
    f_s, f_t, y_s = torch.randn(20, 50, generator=g), torch.randn(30, 50, generator=g), torch.randn(20, 4, generator=g)
    ridge = 1e-2
    got = krr_predict(f_s, f_t, y_s, ridge)
    fs1 = torch.cat([f_s, torch.ones(20, 1)], 1).double().numpy()
    ft1 = torch.cat([f_t, torch.ones(30, 1)], 1).double().numpy()
    lam = ridge * float((fs1 @ fs1.T).trace())
    ref = KernelRidge(alpha=lam, kernel="linear").fit(fs1, y_s.double().numpy()).predict(ft1)
    assert torch.allclose(got.double(), torch.from_numpy(ref), rtol=1e-3, atol=1e-4)
    # and the closed form, directly
    k = fs1 @ fs1.T
    direct = ft1 @ fs1.T @ torch.linalg.solve(torch.from_numpy(k + lam * torch.eye(20).double().numpy()),
                                              y_s.double()).numpy()
    assert torch.allclose(got.double(), torch.from_numpy(direct), rtol=1e-3, atol=1e-4)


def _method(budget=10, **params):
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    base = dict(pool_arch=TINY, pool_size=2, pool_steps=5, real_batch=32, lr_images=1e-2, lr_targets=1e-2)
    base.update(params)
    ctx = DistillContext(source=src, teacher=teacher, budget=budget, steps=50, device=torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    return KRRST(Config(**base), ctx)


def test_gradients_reach_images_and_targets():
    m = _method()
    m.setup()
    x0, y0 = m.x.detach().clone(), m.y.detach().clone()
    out = m.step(0)
    assert torch.isfinite(out["loss"])
    assert m.x.grad is not None and m.x.grad.abs().sum() > 0
    assert m.y.grad is not None and m.y.grad.abs().sum() > 0
    assert not torch.equal(m.x.detach(), x0) and not torch.equal(m.y.detach(), y0)


@pytest.mark.parametrize("legacy", [False, True])
def test_pool_semantics(legacy, monkeypatch):
    m = _method(pool_size=2, pool_steps=4, legacy_pool_reset=legacy)
    calls = {"pool": [0, 0], "reinit": [0, 0]}
    orig_step, orig_reinit = KRRST._pool_step, KRRST._reinit
    monkeypatch.setattr(KRRST, "_pool_step", lambda self, i: (calls["pool"].__setitem__(i, calls["pool"][i] + 1),
                                                              orig_step(self, i))[1])
    monkeypatch.setattr(KRRST, "_reinit", lambda self, i: (calls["reinit"].__setitem__(i, calls["reinit"][i] + 1),
                                                           orig_reinit(self, i)))
    m.setup()
    ages0 = list(m.ages)
    assert all(1 <= a < 4 for a in ages0) and calls["pool"] == ages0  # init: a random age in [1, T) per model
    visits, legacy_steps, legacy_reinits = [0, 0], 0, [0, 0]
    orig_randint = torch.randint
    for s in range(20):
        before = list(m.ages)
        state = m.gen.get_state()
        i = int(orig_randint(0, 2, (1,), generator=torch.Generator().set_state(state)))
        m.step(s)
        visits[i] += 1
        if not legacy:
            # exactly one pool step per outer step, on the sampled model
            assert sum(calls["pool"]) == sum(ages0) + s + 1
            expect = 0 if before[i] + 1 >= 4 else before[i] + 1
            assert m.ages[i] == expect
        else:
            # the reference: a model with T steps serves once, then is renewed with no wasted step, and the
            # counter never resets, so every later visit finds (and renews) a fresh network
            aged = before[i] >= 4
            legacy_steps += 0 if aged else 1
            legacy_reinits[i] += 1 if aged else 0
            assert sum(calls["pool"]) == sum(ages0) + legacy_steps
            assert m.ages[i] == (before[i] if aged else before[i] + 1)
    for i in range(2):
        if legacy:
            assert calls["reinit"][i] == legacy_reinits[i] and max(m.ages) <= 4
        else:  # re-initialised every T steps of its life
            assert calls["reinit"][i] == (ages0[i] + visits[i]) // 4


def _cfg(tmp_path, name, **kw):
    base = dict(data=DataConfig(name="sample"), method="krr_st", budget=20, steps=12, output=str(tmp_path / f"{name}.safetensors"),
                checkpoint_every=0, log_every=4,
                params=dict(pool_arch=TINY, pool_size=2, pool_steps=6, real_batch=64, lr_images=1e-2, lr_targets=1e-2))
    base.update(kw)
    return DistillConfig(**base)


def test_short_run_lowers_outer_loss(tmp_path):
    src = small_source(40)
    teacher = tiny_teacher(source=src)
    res = run_distillation(_cfg(tmp_path, "run", steps=60, log_every=10), teacher=teacher, source=src)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    back = DistilledSet.load(res.path)
    assert len(back) == 20 and back.targets.shape == (20, teacher.dim) and back.meta["teacher"] == teacher.id
    assert back.meta["steps"] == 60 and back.method == "krr_st" and back.labels is None


def test_resume_gives_the_same_set(tmp_path):
    src = small_source(10)
    teacher = tiny_teacher(source=src)
    full = run_distillation(_cfg(tmp_path, "full"), teacher=teacher, source=src)
    part = run_distillation(_cfg(tmp_path, "split"), teacher=teacher, source=src, stop_after=5)
    assert part.steps == 5 and part.path.exists() and not (tmp_path / "split.safetensors").exists()
    resumed = run_distillation(_cfg(tmp_path, "split"), teacher=teacher, source=src, resume=True)
    assert torch.equal(full.set.images, resumed.set.images) and torch.equal(full.set.targets, resumed.set.targets)
    assert not part.path.exists()  # the checkpoint is removed once the set is written


def test_class_conditional_labels(tmp_path):
    src = small_source(10)
    res = run_distillation(_cfg(tmp_path, "cc", class_conditional=True, steps=2), teacher=tiny_teacher(source=src),
                           source=src)
    assert res.set.labels.bincount().tolist() == [2] * 10 and res.set.meta["num_classes"] == 10
