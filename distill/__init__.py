"""ssdd: self-supervised dataset distillation.

The public API::

    from distill import load_dataset, create_model, DistilledSet
"""
from ._version import __version__  # noqa: F401
from .data import ImageSet, load_dataset  # noqa: E402
from .distilled import DistilledSet  # noqa: E402
from .errors import UserError  # noqa: E402
from .models import create_model  # noqa: E402

__all__ = ["DistilledSet", "ImageSet", "UserError", "__version__", "create_model", "load_dataset"]
