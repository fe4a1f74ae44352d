"""Architecture search with a distilled set as the proxy (NNI 3.0, in-process sequential engine).

Imports are lazy so that ``ssdd --help`` does not load NNI.
"""
import importlib

_EXPORTS = {
    "GroundTruthConfig": "config", "NASConfig": "config", "ProxyConfig": "config", "ScoreConfig": "config",
    "evaluate_proxy": "search", "run_search": "search",
    "ConvNetSpace": "spaces", "NB201Space": "spaces", "build": "spaces", "sample_architectures": "spaces",
    "kendall_tau_b": "stats", "spearman": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
