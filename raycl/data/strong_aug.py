"""CLSA's stronger augmentation, batched: 14 ops, drawn ``n_ops`` = 5 times per image, each draw
applied with probability 0.5 (Wang & Qi 2021, sec. 3.3 and Table 1 of its appendix). Every sample
draws its own op and magnitude; samples that drew the same op are transformed together.

Magnitude ranges (the paper's table): ShearX/Y [-0.3, 0.3], TranslateX/Y [-0.3, 0.3] of the image
size, Rotate [-30, 30] degrees, AutoContrast / Invert / Equalize (no magnitude), Solarize threshold
[0, 256], Posterize [4, 8] bits, Contrast / Color / Brightness / Sharpness factor [0.05, 0.95].
Colour ops follow PIL's definitions (ImageOps, ImageEnhance) on [0, 1] floats; geometric ops fill
with grey (0.5) as CLSA's code does. Input and output: float images in [0, 1], [B, C, H, W].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raycl.data.draws import draw_int, draw_uniform

OPS = (
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "auto_contrast",
    "invert",
    "equalize",
    "solarize",
    "posterize",
    "contrast",
    "color",
    "brightness",
    "sharpness",
)
RANGES = {
    "shear_x": (-0.3, 0.3),
    "shear_y": (-0.3, 0.3),
    "translate_x": (-0.3, 0.3),
    "translate_y": (-0.3, 0.3),
    "rotate": (-30.0, 30.0),
    "solarize": (0.0, 256.0),
    "posterize": (4, 8),
    "contrast": (0.05, 0.95),
    "color": (0.05, 0.95),
    "brightness": (0.05, 0.95),
    "sharpness": (0.05, 0.95),
}
FILL = 0.5


def affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sample x at theta @ (u, v, 1) (normalised coordinates); outside the image reads FILL."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


def _eye(n, device):
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def shear(x, v, axis):
    t = _eye(len(x), x.device)
    t[:, axis, 1 - axis] = v
    return affine(x, t)


def translate(x, v, axis):
    t = _eye(len(x), x.device)
    t[:, axis, 2] = 2 * v  # normalised coordinates span 2 per image size
    return affine(x, t)


def rotate(x, degrees):
    a = degrees * math.pi / 180
    t = _eye(len(x), x.device)
    t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    return affine(x, t)


def _q(x):
    return (x * 255).round().clamp(0, 255)


def auto_contrast(x):
    """Per channel, stretch [min, max] to [0, 255] (PIL ImageOps.autocontrast, cutoff 0)."""
    q = _q(x)
    lo, hi = q.amin(dim=(2, 3), keepdim=True), q.amax(dim=(2, 3), keepdim=True)
    scale = 255 / (hi - lo).clamp(min=1)
    out = ((q - lo) * scale).clamp(0, 255).floor()
    return torch.where(hi > lo, out, q) / 255


def invert(x):
    return 1 - x


def equalize(x):
    """PIL ImageOps.equalize per channel: lut[i] = (n_below(i) + step // 2) // step, step =
    (pixels - count of the brightest level) // 255; identity when step is 0."""
    n, c, h, w = x.shape
    q = _q(x).long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, q, torch.ones_like(q))
    last = 255 - (hist.flip(1) > 0).long().argmax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    below = hist.cumsum(1) - hist
    lut = ((below + step // 2) // step.clamp(min=1)).clamp(max=255)
    out = torch.where(step > 0, lut.gather(1, q), q)
    return out.view(n, c, h, w).to(x.dtype) / 255


def solarize(x, threshold):
    """Invert every pixel at or above ``threshold`` (0-256 on the 8-bit scale)."""
    q = _q(x)
    return torch.where(q >= threshold.view(-1, 1, 1, 1), 255 - q, q) / 255


def posterize(x, bits):
    shift = (8 - bits).view(-1, 1, 1, 1)
    q = _q(x).long()
    return ((q >> shift) << shift).to(x.dtype) / 255


def _gray(x):
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _blend(degenerate, x, factor):
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp(0, 1)


def contrast(x, f):
    return _blend(_gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), x, f)


def color(x, f):
    return _blend(_gray(x).expand_as(x), x, f)


def brightness(x, f):
    return _blend(torch.zeros_like(x), x, f)


def sharpness(x, f):
    """Blend with PIL's SMOOTH-filtered image (kernel 1 1 1 / 1 5 1 / 1 1 1, /13), border kept."""
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5
    k = (k / 13).expand(x.shape[1], 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, k, groups=x.shape[1])
    return _blend(smooth, x, f)


def apply_op(name: str, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if name.startswith("shear"):
        return shear(x, v, 0 if name.endswith("x") else 1)
    if name.startswith("translate"):
        return translate(x, v, 0 if name.endswith("x") else 1)
    if name in ("auto_contrast", "invert", "equalize"):
        return globals()[name](x)
    return globals()[name](x, v)


def magnitudes(name: str, n: int, g: torch.Generator, device) -> torch.Tensor:
    if name not in RANGES:
        return torch.zeros(n, device=device)
    lo, hi = RANGES[name]
    if name == "posterize":
        return draw_int(g, int(hi + 1 - lo), n, device) + lo
    return draw_uniform(g, n, device) * (hi - lo) + lo


def strong_augment(x: torch.Tensor, g: torch.Generator, n_ops: int = 5, p: float = 0.5) -> torch.Tensor:
    n = len(x)
    for _ in range(n_ops):
        op = draw_int(g, len(OPS), n, x.device)
        on = draw_uniform(g, n, x.device) < p
        out = x.clone()
        for i, name in enumerate(OPS):
            v = magnitudes(name, n, g, x.device)  # drawn for every op: same stream whatever is picked
            sel = torch.nonzero((op == i) & on).flatten()
            if len(sel):
                out[sel] = apply_op(name, x[sel], v[sel])
        x = out
    return x
