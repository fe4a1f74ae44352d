"""Moved: ``distill.experts`` is now ``distill.methods.mkdt.experts`` (MKDT's expert trajectories live with the method that uses
them). This alias keeps old imports working for one release, with a DeprecationWarning; it is the same module object,
so attributes set on it reach the real one."""
import sys
import warnings

from .methods.mkdt.experts import __name__ as _real

warnings.warn("distill.experts moved to distill.methods.mkdt.experts; the old path goes in the next release",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = sys.modules[_real]
