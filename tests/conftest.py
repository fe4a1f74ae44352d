import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SSDD_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):      # `make test` runs two workers on two cores: one thread each, so that
    import torch                               # the workers do not fight over the cores
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SSDD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Dataset caches go to a temporary folder, never the user's home."""
    old = os.environ.get("SSDD_CACHE_DIR")
    os.environ["SSDD_CACHE_DIR"] = str(tmp_path_factory.mktemp("ssdd-cache"))
    yield
    if old is None:
        os.environ.pop("SSDD_CACHE_DIR", None)
    else:
        os.environ["SSDD_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    """CIFAR-10/100 in torchvision's layout, unpacked from ../shared/data (skips when absent).

    Set SSDD_CIFAR_ROOT to a folder that already holds them to skip the unpacking."""
    return _unpacked(tmp_path_factory, "all", "cifar-100-python")


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory):
    """CIFAR-10 alone (half the unpacking of ``cifar_root``: what the default suite needs)."""
    return _unpacked(tmp_path_factory, "cifar10", "cifar-10-batches-py")


def _unpacked(tmp_path_factory, which: str, folder: str) -> Path:
    given = os.environ.get("SSDD_CIFAR_ROOT")
    if given and (Path(given) / folder).is_dir() and (Path(given) / "cifar-10-batches-py").is_dir():
        return Path(given)
    if not (SHARED / "cifar.py").exists():
        pytest.skip(f"real CIFAR data not available ({SHARED} missing)")
    root = tmp_path_factory.mktemp(f"cifar-{which}")
    subprocess.run([sys.executable, str(SHARED / "cifar.py"), str(root), "--dataset", which], check=True,
                   stdout=subprocess.DEVNULL)
    return root


@pytest.fixture()
def sample_set():
    from distill import load_dataset
    return load_dataset("sample", split="train")
