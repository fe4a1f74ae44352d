import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from distill.cli import cli
from distill.distilled import DistilledSet


@pytest.fixture()
def set_file(tmp_path, sample_set):
    idx = torch.cat([torch.nonzero(sample_set.labels == c).flatten()[:2] for c in range(10)])  # 2 per class
    ds = DistilledSet(images=sample_set.float(idx), targets=torch.randn(20, 16), labels=sample_set.labels[idx],
                      meta=dict(method="random", source="sample", image_size=32, channels=3,
                                mean=list(sample_set.mean), std=list(sample_set.std), num_classes=10))
    return ds.save(tmp_path / "set.safetensors")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("info", "show", "data", "models"):
        assert cmd in r.output


def test_info_and_show(set_file, tmp_path):
    r = run("info", set_file)
    assert r.exit_code == 0 and "random" in r.output and "image-equivalents" in r.output
    png = tmp_path / "grid.png"
    r = run("show", set_file, "-o", png)
    assert r.exit_code == 0, r.output
    img = Image.open(png)
    # one row per class, 2 tiles of 64 px (32 px upscaled x2) with 2 px padding, then the caption strip
    assert img.format == "PNG" and img.width == 2 * (64 + 2) + 2 and img.height > 10 * (64 + 2)


def test_show_refuses_a_pickle_cleanly(tmp_path):
    bad = tmp_path / "evil.safetensors"
    torch.save({"images": torch.zeros(1)}, bad)
    out = tmp_path / "grid.png"
    r = run("show", bad, "-o", out)
    assert r.exit_code == 2 and "refusing to load" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_data_prepare_sample_and_errors(tmp_path):
    r = run("data", "prepare", "sample")
    assert r.exit_code == 0 and "4000 images" in r.output
    r = run("data", "prepare", "cifar100", "--root", tmp_path / "none")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = run("data", "prepare", "imagenet21k", "--root", tmp_path)
    assert r.exit_code == 2 and "unknown dataset" in r.output


@pytest.mark.slow          # 10 s decoding CIFAR-100; `data prepare` is covered on the sample by the test above
@pytest.mark.realdata
def test_data_prepare_real_cifar100(cifar_root):
    r = run("data", "prepare", "cifar100", "--root", cifar_root)
    assert r.exit_code == 0, r.output
    assert "cifar100/train: 50000 images" in r.output and "100 classes (500-500 per class)" in r.output


def test_console_script_exit_code_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "distill.cli", "info", str(tmp_path / "missing.safetensors")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr


def test_python_dash_m_distill_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "distill", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "squeeze" in r.stdout and "merge" in r.stdout


def test_a_caption_wraps_to_the_grid_width():
    from PIL import Image, ImageFont

    from distill.viz import _wrap, add_caption
    font = ImageFont.load_default(size=14)
    text = "scdd.safetensors: scdd, 100 images 3x32x32, source cifar10, storage 1.2 MB = 100.4 image-equivalents"
    lines = _wrap(text, font, 150)
    assert len(lines) > 1 and " ".join(lines) == text and all(font.getlength(x) <= 150 for x in lines)
    narrow, wide = add_caption(Image.new("RGB", (162, 50)), [text]), add_caption(Image.new("RGB", (2000, 50)), [text])
    assert narrow.height > wide.height            # the narrow grid got more caption lines, the wide one a single line
