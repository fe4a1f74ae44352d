"""Distillation methods, one module each, one registry; every method returns a DistilledSet."""
from . import baselines, boost, krr_st, mkdt, scdd  # noqa: F401  (register)
from .base import METHODS, DistillContext, Method, get_method, method_config, register_method
from .krr_st import krr_predict
from .run import DistillConfig, DistillResult, MethodStage, run_distillation

__all__ = ["METHODS", "DistillConfig", "DistillContext", "DistillResult", "MethodStage", "Method",
           "get_method", "krr_predict", "method_config",
           "register_method", "run_distillation"]
