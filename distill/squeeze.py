"""Moved: ``distill.squeeze`` is now ``distill.methods.scdd.squeeze`` (SC-DD's squeeze stage live with the method that uses
them). This alias keeps old imports working for one release, with a DeprecationWarning; it is the same module object,
so attributes set on it reach the real one."""
import sys
import warnings

from .methods.scdd.squeeze import __name__ as _real

warnings.warn("distill.squeeze moved to distill.methods.scdd.squeeze; the old path goes in the next release",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = sys.modules[_real]
