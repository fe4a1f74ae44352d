"""Split CIFAR-10/100 (and the embedded sample) as Avalanche class-incremental benchmarks,
built from local data (never downloading), with the class mapping kept for the buffers.

Images stay in [0, 1] pixel space (the toolkit's convention); models normalise inside with the
benchmark's ``mean`` / ``std``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill.data import ImageSet, label_subset, load_dataset
from distill.errors import DataError

from .compat import class_incremental, make_tensor_dataset

DEFAULT_EXPERIENCES = {"cifar10": 5, "cifar100": 10, "sample": 5}


@dataclass
class ContinualBenchmark:
    scenario: object                   # the Avalanche benchmark (train_stream, test_stream)
    name: str
    num_classes: int
    classes: list[str]
    class_order: list[int]             # original label of new class k
    mapping: dict[int, int]            # original label -> benchmark label
    mean: tuple
    std: tuple
    image_size: int
    channels: int
    test_sets: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per experience, pixel space

    @property
    def n_experiences(self) -> int:
        return len(self.test_sets)

    def remap(self, original_labels: torch.Tensor) -> torch.Tensor:
        """Original dataset labels -> the benchmark's labels."""
        lut = torch.full((max(self.mapping) + 1,), -1, dtype=torch.long)
        for o, n in self.mapping.items():
            lut[o] = n
        return lut[original_labels.cpu()].to(original_labels.device)


def split_benchmark(name: str, root: str | None = None, n_experiences: int | None = None, seed: int = 0,
                    train_per_class: int | None = None, test_per_class: int | None = None) -> ContinualBenchmark:
    """Split ``name`` into class-incremental experiences with a seeded class order."""
    n_exp = n_experiences or DEFAULT_EXPERIENCES.get(name, 5)
    train = load_dataset(name, root, "train")
    test = load_dataset(name, root, "test")
    if train_per_class:
        train = train.subset(label_subset(train.labels, per_class=train_per_class, seed=seed))
    if test_per_class:
        test = test.subset(label_subset(test.labels, per_class=test_per_class, seed=seed))
    k = train.num_classes
    if k % n_exp:
        raise DataError(f"{name} has {k} classes, which do not split evenly into {n_exp} experiences")
    order = torch.randperm(k, generator=torch.Generator().manual_seed(seed)).tolist()
    mapping = {orig: new for new, orig in enumerate(order)}
    bench = ContinualBenchmark(None, name, k, [train.classes[o] for o in order], order, mapping, train.mean,
                               train.std, train.image_size, train.channels)
    # the datasets hold [0, 1] pixel-space images, as everywhere in the toolkit; the model normalises
    # with the benchmark's mean/std (they are in ``bench``)

    def avl(ds: ImageSet):
        y = bench.remap(ds.labels)
        x = ds.float()
        return make_tensor_dataset(x, y), x, y

    tr, _, _ = avl(train)
    te, xte, yte = avl(test)
    bench.scenario = class_incremental(tr, te, n_exp, seed)
    per = k // n_exp
    bench.test_sets = [(xte[(yte >= i * per) & (yte < (i + 1) * per)], yte[(yte >= i * per) & (yte < (i + 1) * per)])
                       for i in range(n_exp)]
    return bench
