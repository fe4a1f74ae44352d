"""The engine: one training loop, resumable stages, one file record, and the pieces under them
(devices and the precision policy, seeding, progress, metric logs, atomic files, checkpoints)."""
from . import dist
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .device import amp_mode, autocast, channels_last, describe_precision, full_precision, resolve_device
from .files import atomic_path, write_json, write_text
from .logging import MetricLogger
from .loop import FitResult, accuracy, epoch_batches, fit, update
from .progress import progress
from .record import RECORD_KINDS, Record, load_record, register_record
from .seed import get_rng_state, seed_everything, set_rng_state
from .stage import Stage, StageResult, checkpoint_path, run_stage

__all__ = [
    "Checkpoint", "FitResult", "dist", "MetricLogger", "RECORD_KINDS", "Record", "Stage", "StageResult", "accuracy",
    "amp_mode", "atomic_path", "autocast", "channels_last", "checkpoint_path", "describe_precision", "epoch_batches",
    "fit", "full_precision", "get_rng_state", "load_checkpoint", "load_record", "progress", "register_record",
    "resolve_device", "run_stage", "save_checkpoint", "seed_everything", "set_rng_state", "update", "write_json",
    "write_text",
]
