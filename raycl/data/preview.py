"""A picture of what the method trains on: a few samples and each of their views, side by side.

The first thing to look at when a contrastive run underperforms (crops too small, colours gone,
a strong view that is noise). Rows are samples; columns the input, then the views the method's
pipeline makes for one training step (SimCLR's pair, CLSA's two weak views and one strong view per
size, ImCLR's width-concatenated training sample, SimCLIC's un-augmented input), each drawn from a
generator seeded by ``run.seed`` exactly as a training step draws them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from raycl.config import ensure_config
from raycl.data import build_sources, check_data
from raycl.data.source import subset
from raycl.data.views import MEAN, STD, views_for
from raycl.errors import ConfigError
from raycl.methods import build_method

PAD, HEADER = 4, 14  # pixels between cells, and for the column titles


@dataclass
class Grid:
    image: Any  # PIL.Image.Image
    columns: list[str]
    cells: list[list[tuple[int, int, int, int]]]  # [row][column] -> (left, top, right, bottom)


def view_columns(cfg, method, images: torch.Tensor, g: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """(title, [n, C, h, w] in [0, 1]) per column: the input and what the method's pipeline makes."""

    views = views_for(cfg, method)
    shown = [v.float() * STD + MEAN for v in views(images, g)]
    cols = [("input", images.float() / 255.0)] + [(v.title, x) for v, x in zip(views.views, shown)]
    composed = method.composed_view(shown[0])
    return cols + ([composed] if composed is not None else [])


def grid(cfg, samples: int = 6, zoom: int | None = None) -> Grid:
    """A seeded random sample of the training rows (``data.*``) and their views under ``cfg``."""

    train, _ = build_sources(cfg)
    block = subset(train, min(samples, len(train)), cfg.run.seed).read_all()
    images = torch.from_numpy(np.ascontiguousarray(block.images[block.valid]))
    torch.manual_seed(cfg.run.seed)
    method = build_method(cfg, cfg.data.channels)
    g = torch.Generator().manual_seed(cfg.run.seed)
    cols = view_columns(cfg, method, images, g)
    zoom = zoom or max(1, 96 // cfg.data.image_size)  # digits at 28 px are drawn 3x
    widths = [c.shape[3] * zoom for _, c in cols]
    height = max(c.shape[2] for _, c in cols) * zoom
    W = PAD + sum(w + PAD for w in widths)
    H = HEADER + PAD + len(images) * (height + PAD)
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    cells: list[list[tuple[int, int, int, int]]] = [[] for _ in range(len(images))]
    x = PAD
    for (title, col), w in zip(cols, widths):
        draw.text((x, 1), title, fill="black")
        for r in range(len(images)):
            pix = (col[r].clamp(0, 1) * 255).round().to(torch.uint8)
            pix = pix.expand(3, -1, -1) if pix.shape[0] == 1 else pix
            tile = Image.fromarray(pix.permute(1, 2, 0).numpy(), "RGB")
            tile = tile.resize((tile.width * zoom, tile.height * zoom), Image.Resampling.NEAREST)
            y = HEADER + PAD + r * (height + PAD)
            canvas.paste(tile, (x, y))
            cells[r].append((x, y, x + tile.width, y + tile.height))
        x += w + PAD
    return Grid(canvas, [t for t, _ in cols], cells)


def write_grid(cfg, out: str, samples: int) -> dict:
    """``grid`` of the checked ``cfg`` written to ``out`` (PNG): the path, the columns, the image size."""
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 64:
        raise ConfigError(f"--samples: expected an integer in 1..64, got {samples!r}")
    path = os.path.abspath(os.path.expanduser(out))
    parent = os.path.dirname(path)
    if os.path.isdir(path) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        why = "is a directory" if os.path.isdir(path) else f"folder {parent} does not exist or is not writable"
        raise ConfigError(f"--out: cannot write {out!r}: {why}")
    cfg = ensure_config(cfg)
    check_data(cfg)
    g = grid(cfg, samples)
    try:
        g.image.save(path, format="PNG")
    except OSError as e:
        raise ConfigError(f"--out: cannot write {out!r}: {e.strerror or e}") from None
    return {"out": path, "columns": g.columns, "samples": len(g.cells), "size": list(g.image.size)}
