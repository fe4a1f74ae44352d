"""``DistilledReplayPlugin``: replay a distilled buffer inside any Avalanche strategy."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin

from distill.errors import UserError

from .buffers import DistilledBuffer
from .compat import replay_loader

MODES = ("experience", "representation", "both")


class DistilledReplayPlugin(SupervisedPlugin):
    """Replay of a :class:`DistilledBuffer`, at Avalanche's named callbacks.

    mode ``experience``: synthetic images with their labels are mixed into every training batch
    (``batch_size_mem`` of them), as Avalanche's ``ReplayPlugin`` does with real exemplars.
    mode ``representation``: an extra term ``weight * MSE(model.embed(x_syn), target_syn)`` keeps the
    model's features of the synthetic images near the features stored with them (DER-like; the
    buffer needs ``store_targets=True``). ``both``: the two together. After each experience the
    buffer distils the experience just seen (``after_training_exp``).
    """

    def __init__(self, buffer: DistilledBuffer, mode: str = "experience", batch_size_mem: int | None = None,
                 weight: float = 1.0):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"unknown replay mode '{mode}'", fix=f"use one of {MODES}")
        if mode in ("representation", "both") and not buffer.store_targets:
            raise UserError("representation replay needs a buffer built with store_targets=True")
        self.buffer, self.mode, self.batch_size_mem, self.weight = buffer, mode, batch_size_mem, weight
        self.last_repr_loss: torch.Tensor | None = None
        self._memory = None

    def before_training_exp(self, strategy, **kwargs):
        if len(self.buffer) == 0:
            self._memory = None
            return
        if self.mode in ("experience", "both"):
            bsm = self.batch_size_mem or strategy.train_mb_size
            strategy.dataloader = replay_loader(strategy.adapted_dataset, self.buffer.buffer, strategy.train_mb_size, bsm)
        self._memory = self.buffer.tensors(device=strategy.device)

    def before_backward(self, strategy, **kwargs):
        if self.mode not in ("representation", "both") or self._memory is None:
            return
        x, _, t = self._memory
        bsm = min(len(x), self.batch_size_mem or strategy.train_mb_size)
        idx = torch.randint(0, len(x), (bsm,), device=x.device)
        feats = strategy.model.embed(x[idx])
        loss = F.mse_loss(feats.float(), t[idx])
        self.last_repr_loss = loss.detach()  # a tensor: no device sync per step
        strategy.loss = strategy.loss + self.weight * loss

    def after_training_exp(self, strategy, **kwargs):
        self.buffer.post_adapt(strategy, strategy.experience)
        self._memory = None
