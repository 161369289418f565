"""`raycl views`: a grid of training images and the views each method makes of them."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from raycl import api
from raycl.config import load_config

ZOOM, PAD, HEADER = 3, 4, 14  # 28 px digits drawn 3x; the grid's spacing and title row


def grid_of(tmp_path, *overrides, samples=4):
    out = api.views(load_config(api.demo_config_path(), list(overrides)), str(tmp_path / "v.png"), samples)
    img = np.asarray(Image.open(out["out"]).convert("RGB"))
    return out, img


def cell(img, row, widths, col, height):
    """Crop by the layout the test computes itself: columns left to right, rows top to bottom."""
    x = PAD + sum(w + PAD for w in widths[:col])
    y = HEADER + PAD + row * (height + PAD)
    return img[y : y + height, x : x + widths[col]]


def test_simclr_grid_has_the_input_and_two_different_views(tmp_path):
    out, img = grid_of(tmp_path, samples=4)
    assert out["columns"] == ["input", "view 1", "view 2"] and out["samples"] == 4
    side = 28 * ZOOM
    assert img.shape == (HEADER + PAD + 4 * (side + PAD), PAD + 3 * (side + PAD), 3)
    for r in range(4):
        x, v1, v2 = (cell(img, r, [side] * 3, c, side) for c in range(3))
        assert not np.array_equal(v1, v2) and not np.array_equal(v1, x)
        assert x.std() > 0  # a digit, not an empty cell


def test_clsa_imclr_and_simclic_show_their_own_views(tmp_path):
    out, img = grid_of(tmp_path, "method.name=clsa", "method.strong_sizes=[40]", samples=2)
    assert out["columns"] == ["input", "weak 1", "weak 2", "strong 40px"]
    assert img.shape[1] == PAD + 3 * (28 * ZOOM + PAD) + 40 * ZOOM + PAD
    out, img = grid_of(tmp_path, "method.name=imclr", samples=2)
    assert out["columns"] == ["input", "view 1", "view 1, k=2 concat"]
    side = 28 * ZOOM
    widths = [side, side, 2 * side]
    assert img.shape[1] == PAD + sum(w + PAD for w in widths)
    for r in range(2):  # the concatenated sample starts with view 1 itself
        assert np.array_equal(cell(img, r, widths, 2, side)[:, :side], cell(img, r, widths, 1, side))
    out, img = grid_of(tmp_path, "method.name=simclic", samples=2)
    assert out["columns"] == ["input", "input to the network"]
    for r in range(2):  # SimCLIC trains on the un-augmented image (to one 8-bit level)
        a, b = cell(img, r, [side] * 2, 0, side), cell(img, r, [side] * 2, 1, side)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.slow  # a CLI in a subprocess
def test_views_cli_writes_the_png(tmp_path):
    p = subprocess.run([sys.executable, "-m", "raycl", "views", api.demo_config_path(), "--out", str(tmp_path / "g.png"),
                        "--samples", "2"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert Image.open(tmp_path / "g.png").size == tuple(out["size"]) == (PAD + 3 * (84 + PAD), HEADER + PAD + 2 * 88)


@pytest.mark.parametrize("bad", ["{tmp}/missing/v.png", "{tmp}"])
def test_views_refuses_an_output_it_cannot_write(tmp_path, bad):
    from raycl.errors import ConfigError

    with pytest.raises(ConfigError, match="--out: cannot write"):
        api.views(load_config(api.demo_config_path()), bad.format(tmp=tmp_path))
