"""MKDT: the functional unroll against explicit computations, gradients, activation checkpointing,
expert trajectories (resume, validation), a short run, the high_loss baseline."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill.data.config import DataConfig
from distill.distilled import DistilledSet
from distill.errors import DataError, FileFormatError
from distill.methods.mkdt.experts import ExpertsConfig, Trajectory, load_experts, train_experts
from distill.methods import METHODS, DistillConfig, run_distillation
from distill.methods.mkdt import FlatParams, high_loss_scores, matching_backward, matching_loss, minibatches, unroll
from distill.models import create_model

from .helpers import small_source, tiny_teacher


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_unroll_matches_closed_form_sgd_on_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    lr = torch.tensor(0.3)
    batches = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(2, 6)]
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    for idx in batches:   # d/dW mean((Wx + b - y)^2) = 2 / (B * D) * r^T x
        r = x[idx] @ w.T + b - y[idx]
        scale = 2.0 / r.numel()
        w, b = w - lr * scale * r.T @ x[idx], b - lr * scale * r.sum(0)
    theta = unroll(FlatParams(lin), _flat(lin).requires_grad_(True), x, y, lr, batches)
    assert torch.allclose(theta, torch.cat([w.reshape(-1), b]), atol=1e-6)


def test_unroll_matches_module_sgd_on_a_convnet_and_the_loss_matches():
    torch.manual_seed(1)
    model = create_model("convnet-d2-w8-in", out_dim=6, image_size=16)
    x, y = torch.randn(10, 3, 16, 16), torch.randn(10, 6)
    batches = minibatches(10, 4, 5, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4]            # chunks of a permutation, then a new one
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    for idx in batches:
        opt.zero_grad()
        F.mse_loss(ref(x[idx]), y[idx]).backward()
        opt.step()
    start = _flat(model)
    theta = unroll(FlatParams(model), start.clone().requires_grad_(True), x, y, torch.tensor(0.05), batches)
    assert torch.allclose(theta, _flat(ref), atol=1e-5)
    target = start + 0.01
    expected = ((_flat(ref) - target) ** 2).sum() / ((start - target) ** 2).sum()
    assert torch.allclose(matching_loss(theta, start, target), expected, rtol=1e-4)


class _SavedBytes:
    """Peak bytes of tensors autograd keeps for the backward pass (live at once)."""

    def __init__(self):
        self.live = self.peak = 0

    def pack(self, t):
        outer = self

        class Held:
            def __init__(self, t):
                self.t, self.n = t, t.numel() * t.element_size()
                outer.live += self.n
                outer.peak = max(outer.peak, outer.live)

            def __del__(self):
                outer.live -= self.n
        return Held(t)

    @staticmethod
    def unpack(h):
        return h.t


def _grads(checkpoint):
    torch.manual_seed(2)
    model = create_model("convnet-d2-w8-in", out_dim=4, image_size=16)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = torch.randn(6, 4, requires_grad=True)
    lr = torch.tensor(0.1, requires_grad=True)
    start = _flat(model)
    target = start + 0.05 * torch.randn_like(start)
    batches = minibatches(6, 3, 6, torch.Generator().manual_seed(1))
    mem = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(mem.pack, mem.unpack):
        loss = matching_backward(FlatParams(model), start, target, x, y, lr, batches, checkpoint=checkpoint)
    return loss, x.grad, y.grad, lr.grad, mem.peak


def test_gradients_reach_images_targets_and_lr_and_checkpointing_changes_memory_not_values():
    loss, gx, gy, glr, peak = _grads(False)
    loss_c, gx_c, gy_c, glr_c, peak_c = _grads(True)
    for g in (gx, gy, glr):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.allclose(loss, loss_c)
    assert torch.allclose(gx, gx_c, rtol=1e-4, atol=1e-9)
    assert torch.allclose(gy, gy_c, rtol=1e-4, atol=1e-9)
    assert torch.allclose(glr, glr_c, rtol=1e-4)
    assert peak_c < peak / 3          # one step's graph at a time instead of six


def test_lr_gradient_matches_finite_differences():
    torch.manual_seed(3)
    lin = nn.Linear(4, 2)
    x, y = torch.randn(6, 4), torch.randn(6, 2)
    start = _flat(lin)
    target = start + 0.1
    batches = [torch.arange(0, 3), torch.arange(3, 6)]
    fp = FlatParams(lin)

    def loss_at(v):
        with torch.no_grad():
            return float(matching_loss(unroll(fp, start.clone().requires_grad_(True), x, y, torch.tensor(v, dtype=torch.float64),
                                              batches).detach(), start, target))
    lr = torch.tensor(0.2, requires_grad=True)
    matching_backward(fp, start, target, x, y, lr, batches)
    h = 1e-3
    fd = (loss_at(0.2 + h) - loss_at(0.2 - h)) / (2 * h)
    assert abs(float(lr.grad) - fd) < 1e-3 * max(1.0, abs(fd))


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    d = tmp_path_factory.mktemp("experts")
    src = small_source(6)
    teacher = tiny_teacher(source=src)
    cfg = ExpertsConfig(teacher="<in memory>", arch="convnet-d2-w8-in", experts=2, epochs=3, batch_size=16,
                        device="cpu", output=str(d / "experts"), checkpoint_every=1)
    res = train_experts(cfg, source=src, teacher=teacher, quiet=True)
    return src, teacher, cfg, res


def test_expert_trajectories_hold_every_epoch_and_validate(experts):
    src, teacher, cfg, res = experts
    assert res.trained == [0, 1] and len(res.paths) == 2
    trajs = load_experts(cfg.output, src, teacher)
    t = trajs[0]
    assert t.params.shape[0] == cfg.epochs + 1 and t.meta["losses"] and len(t.meta["losses"]) == cfg.epochs
    model = t.template()
    assert t.num_params == sum(p.numel() for p in model.parameters())
    assert not torch.equal(trajs[0].at(0), trajs[1].at(0))                   # experts start apart
    assert t.meta["losses"][-1] < t.meta["losses"][0]                        # and learn
    cut = load_experts(cfg.output, keep_epochs=1)                           # only the epochs a run reads
    assert cut[0].params.shape[0] == 2 and torch.equal(cut[0].params, t.params[:2]) and cut[0].epochs == cfg.epochs
    again = train_experts(cfg, source=src, teacher=teacher, quiet=True)     # finished experts are skipped
    assert again.trained == [] and again.skipped == [0, 1]


def test_a_killed_and_resumed_expert_ends_bit_identical(tmp_path, experts):
    src, teacher, cfg, _ = experts
    import dataclasses
    split = dataclasses.replace(cfg, output=str(tmp_path / "split"), experts=1)
    part = train_experts(split, source=src, teacher=teacher, quiet=True, stop_after=5)
    assert part.trained == [] and not (tmp_path / "split" / "expert_000.safetensors").exists()
    done = train_experts(split, source=src, teacher=teacher, quiet=True)
    assert done.trained == [0]
    a = Trajectory.load(tmp_path / "split" / "expert_000.safetensors")
    b = Trajectory.load(f"{cfg.output}/expert_000.safetensors")
    assert torch.equal(a.params, b.params)


def test_workers_split_the_experts(tmp_path, experts):
    import dataclasses
    src, teacher, cfg, _ = experts
    w1 = train_experts(dataclasses.replace(cfg, output=str(tmp_path / "w"), experts=3, epochs=1, worker=1, workers=2),
                       source=src, teacher=teacher, quiet=True)
    assert w1.trained == [1]


def test_trajectory_file_refuses_corruption(tmp_path, experts):
    src, teacher, cfg, res = experts
    t = Trajectory.load(res.paths[0])
    bad = Trajectory(t.params[:-1].clone(), dict(t.meta))                # a missing epoch
    with pytest.raises(FileFormatError, match="rows"):
        bad.save(tmp_path / "bad.safetensors")
    shapes = [list(s) for s in t.meta["shapes"]]
    shapes[0][0] += 1
    with pytest.raises(FileFormatError, match="add up"):
        Trajectory(t.params.clone(), {**t.meta, "shapes": shapes}).save(tmp_path / "bad2.safetensors")
    with pytest.raises(DataError, match="other images"):
        load_experts(cfg.output, small_source(5), teacher)
    with pytest.raises(DataError, match="no expert trajectories"):
        load_experts(tmp_path / "nothing")


def test_fp16_trajectories(tmp_path, experts):
    import dataclasses
    src, teacher, cfg, _ = experts
    out = train_experts(dataclasses.replace(cfg, output=str(tmp_path / "h"), experts=1, epochs=1, dtype="fp16"),
                        source=src, teacher=teacher, quiet=True)
    t = Trajectory.load(out.paths[0])
    assert t.params.dtype == torch.float16 and t.at(1).dtype == torch.float32


def test_short_mkdt_run_lowers_the_matching_loss_and_writes_lr(tmp_path, experts):
    src, teacher, cfg, _ = experts
    params = {"experts": cfg.output, "syn_steps": 4, "batch_syn": None, "max_start_epoch": 1, "expert_epochs": 2,
              "single_expert": True, "lr_images": 100.0, "lr_targets": 10.0, "lr_lr": 1e-3}
    dcfg = DistillConfig(data=DataConfig(name="sample"), method="mkdt", budget=10, steps=30, seed=0, log_every=1,
                         params=params, output=str(tmp_path / "mkdt.safetensors"))
    res = run_distillation(dcfg, teacher=teacher, source=src, quiet=True)
    losses = [h["loss"] for h in res.history]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
    back = DistilledSet.load(res.path)
    assert back.method == "mkdt" and back.lr is not None and float(back.lr) != 0.1
    assert back.materialize().lr == pytest.approx(float(back.lr))
    assert back.targets.shape == (10, teacher.dim)


def test_high_loss_picks_the_examples_the_experts_fit_worst(tmp_path, experts):
    src, teacher, cfg, _ = experts
    trajs = load_experts(cfg.output)
    scores = high_loss_scores(trajs, src, teacher.represent(src))
    dcfg = DistillConfig(data=DataConfig(name="sample"), method="high_loss", budget=7, steps=0,
                         params={"experts": cfg.output}, output=None)
    s = run_distillation(dcfg, teacher=teacher, source=src, quiet=True).set
    chosen = torch.tensor(s.meta["source_indices"])
    assert set(chosen.tolist()) == set(torch.topk(scores, 7).indices.tolist())
    assert torch.allclose(s.targets, teacher.encode(src.float(chosen)))
    # class-conditional: per class
    cc = DistillConfig(data=DataConfig(name="sample"), method="high_loss", budget=10, steps=0, class_conditional=True,
                       params={"experts": cfg.output}, output=None)
    s = run_distillation(cc, teacher=teacher, source=src, quiet=True).set
    assert s.labels.bincount(minlength=10).tolist() == [1] * 10


def test_mkdt_without_experts_says_how_to_make_them(tmp_path):
    from distill.errors import ConfigError
    src = small_source(3)
    dcfg = DistillConfig(data=DataConfig(name="sample"), method="mkdt", budget=5, steps=1, output=None)
    with pytest.raises(ConfigError, match="ssdd experts"):
        run_distillation(dcfg, teacher=tiny_teacher(source=src), source=src, quiet=True)
    assert METHODS["mkdt"].uses_experts and METHODS["high_loss"].uses_experts


def test_info_reads_a_trajectory_in_a_fresh_process(experts):
    import subprocess
    import sys
    _, _, _, res = experts
    out = subprocess.run([sys.executable, "-m", "distill.cli", "info", str(res.paths[0])], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "expert trajectory #0" in out.stdout and "3 epochs" in out.stdout


@pytest.mark.slow          # the API path of both stages is tested above; this runs the CLI presets whole
def test_cli_experts_then_distill_with_the_sample_presets(tmp_path):
    from click.testing import CliRunner

    from distill.cli import cli
    teacher = tmp_path / "teacher.safetensors"
    tiny_teacher().save(teacher)
    r = CliRunner().invoke(cli, ["experts", "-c", "configs/mkdt/experts_sample.yaml", f"teacher={teacher}", "experts=1",
                                 "epochs=3", "arch=convnet-d2-w8-in", f"output={tmp_path / 'ex'}"])
    assert r.exit_code == 0, r.output
    assert "1 trained" in r.output and (tmp_path / "ex" / "expert_000.safetensors").exists()
    r = CliRunner().invoke(cli, ["experts", "-c", "configs/mkdt/experts_sample.yaml", "--worker", "2of3"])
    assert r.exit_code == 2 and "I/N" in r.output
    r = CliRunner().invoke(cli, ["distill", "-c", "configs/mkdt/sample.yaml", f"teacher={teacher}", "budget=10", "steps=2",
                                 f"params.experts={tmp_path / 'ex'}", "params.syn_steps=2", "params.batch_syn=5",
                                 f"output={tmp_path / 'mkdt.safetensors'}"])
    assert r.exit_code == 0, r.output
    assert DistilledSet.load(tmp_path / "mkdt.safetensors").lr is not None
