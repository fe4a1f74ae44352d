"""Shared loop pieces: devices and AMP, seeding, progress, metric logs, atomic files, checkpoints."""
from .checkpoint import load_checkpoint, save_checkpoint
from .device import autocast, channels_last, resolve_device
from .files import atomic_path, write_json, write_text
from .logging import MetricLogger
from .progress import progress
from .seed import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "MetricLogger",
    "atomic_path",
    "autocast",
    "channels_last",
    "get_rng_state",
    "load_checkpoint",
    "progress",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "write_json",
    "write_text",
]
