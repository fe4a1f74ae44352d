"""Cross-architecture transfer of distilled sets (registry models and timm:<name>)."""
from .run import DEFAULT_ARCHS, SetSpec, TransferConfig, run_transfer

__all__ = ["DEFAULT_ARCHS", "SetSpec", "TransferConfig", "run_transfer"]
