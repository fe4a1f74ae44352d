"""Pictures: image grids with captions, line and bar charts (PNG, written atomically)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .engine.files import atomic_path


def grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2, min_tile: int = 64):
    """A PIL image of a grid of N x C x H x W images, clamped to [0, 1] and upscaled (nearest) so each
    tile is at least ``min_tile`` px wide."""
    from PIL import Image
    x = images.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    scale = max(1, math.ceil(min_tile / max(h, w)))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    h, w = h * scale, w * scale
    rows = math.ceil(n / nrow)
    canvas = torch.ones(3, rows * (h + padding) + padding, nrow * (w + padding) + padding)
    for i in range(n):
        r, c = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        canvas[:, y0:y0 + h, x0:x0 + w] = x[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def add_caption(img, lines: Sequence[str], font_size: int = 14):
    """Append a white strip with ``lines`` of text under ``img``."""
    from PIL import Image, ImageDraw, ImageFont
    if not lines:
        return img
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    line_h = font_size + 6
    lines = [w for line in lines for w in _wrap(line, font, img.width - 12)]   # a caption never runs off the image
    out = Image.new("RGB", (img.width, img.height + line_h * len(lines) + 8), "white")
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((6, img.height + 4 + i * line_h), line, fill="black", font=font)
    return out


def _wrap(line: str, font, width: float) -> list[str]:
    """``line`` broken at spaces into pieces no wider than ``width`` pixels (a single long word stays whole)."""
    out, cur = [], ""
    for word in line.split(" "):
        trial = f"{cur} {word}" if cur else word
        if cur and font.getlength(trial) > width:
            out.append(cur)
            cur = word
        else:
            cur = trial
    return out + [cur]


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None,
              caption: Sequence[str] = (), min_tile: int = 64) -> Path:
    img = add_caption(grid_image(images, nrow=nrow, min_tile=min_tile), caption)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def matplotlib_pyplot():
    """pyplot with a non-interactive backend (no display on servers and CI)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt
