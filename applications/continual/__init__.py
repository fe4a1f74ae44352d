"""Distilled replay for Avalanche continual-learning benchmarks (lazy imports: Avalanche is optional)."""
import importlib

_EXPORTS = {"DistilledBuffer": "buffers", "real_buffer_size": "buffers", "real_item_bytes": "buffers",
            "DistilledReplayPlugin": "plugin", "split_benchmark": "benchmarks", "ContinualBenchmark": "benchmarks",
            "ContinualConfig": "config", "BufferSpec": "config", "DistillSpec": "config",
            "run_continual": "run", "summarize": "run", "experience_accuracies": "run", "retrain_on_memory": "run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
