"""One adapter over the Avalanche helpers whose names moved between releases (0.4 - 0.6)."""
from __future__ import annotations

from typing import Any


def make_tensor_dataset(x, y, transform_groups: dict | None = None, task_label: int = 0):
    """An Avalanche classification dataset over tensors (images, int labels)."""
    import avalanche.benchmarks.utils as U
    for name in ("_make_taskaware_tensor_classification_dataset",  # 0.6
                 "make_tensor_classification_dataset",              # 0.3 - 0.5
                 "make_taskaware_tensor_classification_dataset"):
        fn = getattr(U, name, None)
        if fn is not None:
            return fn(x, y, transform_groups=transform_groups, targets=y, task_labels=task_label)
    if hasattr(U, "AvalancheTensorDataset"):  # <= 0.2
        return U.AvalancheTensorDataset(x, y, transform_groups=transform_groups, targets=y, task_labels=task_label)
    raise ImportError("this Avalanche version has no tensor classification dataset helper")


def class_incremental(train, test, n_experiences: int, seed: int = 0) -> Any:
    """A class-incremental benchmark over already-remapped labels (experience i holds a contiguous block)."""
    try:
        from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark  # 0.5+
        classes = sorted({int(t) for t in train.targets})
        return class_incremental_benchmark({"train": train, "test": test}, class_order=classes,
                                           num_experiences=n_experiences)
    except ImportError:  # pragma: no cover - older Avalanche
        from avalanche.benchmarks.generators import nc_benchmark
        return nc_benchmark(train, test, n_experiences=n_experiences, task_labels=False, seed=seed,
                            fixed_class_order=sorted({int(t) for t in train.targets}))


def replay_loader(data, memory, batch_size: int, batch_size_mem: int):
    from avalanche.benchmarks.utils.data_loader import ReplayDataLoader
    return ReplayDataLoader(data, memory, oversample_small_tasks=True, batch_size=batch_size,
                            batch_size_mem=batch_size_mem, task_balanced_dataloader=False, shuffle=True)


def dataset_tensors(data, batch_size: int = 1024):
    """(images, labels) of any Avalanche classification dataset, collated in batches by a DataLoader
    (no per-item loop of our own); images as Avalanche returns them (pixel space here)."""
    from torch.utils.data import DataLoader
    xs, ys = [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0):
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        import torch
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    import torch
    return torch.cat(xs), torch.cat(ys).long()


def concat(datasets):
    from avalanche.benchmarks.utils import concat_datasets
    return concat_datasets(list(datasets))
