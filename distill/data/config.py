"""The ``data:`` section of every job config."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class DataConfig:
    """Where a dataset comes from. ``name`` is a source of :func:`distill.data.load_dataset`.

    YAML::

        data: {name: cifar100, root: /data, split: train, image_size: null}
    """

    name: str = "sample"
    root: str | None = None
    split: str = "train"
    image_size: int | None = None
    download: bool = False
    cache: bool = True
