"""Weighted k-NN classification on frozen features (Wu et al., 2018), the usual SSL health check."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Top-1 accuracy (%) of a cosine-similarity k-NN vote weighted by exp(sim / T)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, train_x.shape[0])
    tr = F.normalize(train_x.float(), dim=1)
    te = F.normalize(test_x.float(), dim=1)
    correct = 0
    for i in range(0, te.shape[0], chunk):
        sim = te[i:i + chunk] @ tr.T
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_y[idx], (w / temperature).exp())
        correct += (votes.argmax(1) == test_y[i:i + chunk]).sum().item()
    return 100.0 * correct / te.shape[0]


#: the fixed slice of the embedded sample on which a zoo teacher's k-NN is recorded at build time and
#: re-measured by the tests (fp32, no autocast): the first 2,000 training and 500 test images, k = 20
SAMPLE_SLICE = {"bank": 2000, "queries": 500, "k": 20}


@torch.no_grad()
def sample_knn(teacher) -> float:
    """k-NN top-1 (%) of ``teacher`` on :data:`SAMPLE_SLICE` of the embedded sample, in fp32 on the CPU."""
    from ..data import load_dataset
    train = load_dataset("sample", None, "train", teacher.image_size)
    test = load_dataset("sample", None, "test", teacher.image_size)
    model = teacher.model.to("cpu").eval()

    def feats(ds, n):
        x = ds.float(torch.arange(n))
        return torch.cat([model.embed(x[i:i + 500]).float() for i in range(0, n, 500)])

    n_bank, n_q = SAMPLE_SLICE["bank"], SAMPLE_SLICE["queries"]
    return round(knn_accuracy(feats(train, n_bank), train.labels[:n_bank], feats(test, n_q), test.labels[:n_q],
                              k=SAMPLE_SLICE["k"]), 2)
