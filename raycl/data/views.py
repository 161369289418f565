"""SimCLR's weak augmentation, batched: every sample draws its own parameters, the whole batch is
transformed by a few tensor ops (one ``grid_sample`` for crop + flip), so the same code keeps up on
CPU workers and on the GPU. A ``torch.Generator`` makes a view reproducible from (seed, epoch, step);
wrapped in a ``SampleStream`` it gives each sample of a global batch the same draws whichever worker
holds it.

Ops (Chen et al. 2020, appendix A): random resized crop (scale 0.2-1 for small images, 0.08-1 for
ImageNet-size), horizontal flip p=0.5, colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2,
Gaussian blur p=0.5 only for images of 64 px and more (SimCLR's CIFAR recipe drops blur).
On 1-channel images saturation, hue and grayscale are no-ops and are skipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raycl.data.draws import draw_int, draw_uniform
from raycl.data.strong_aug import strong_augment

MEAN, STD = 0.5, 0.25


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _u(n, lo, hi, g, device):
    return draw_uniform(g, n, device) * (hi - lo) + lo


def random_resized_crop_flip(x, size, scale, ratio, flip_p, g):
    n, device = x.shape[0], x.device
    area = _u(n, *scale, g, device)
    logr = _u(n, math.log(ratio[0]), math.log(ratio[1]), g, device)
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = _u(n, -1.0, 1.0, g, device) * (1 - w)
    cy = _u(n, -1.0, 1.0, g, device) * (1 - h)
    flip = torch.where(draw_uniform(g, n, device) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x):
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def color_jitter(x, strength, p, g):
    b, c, s, hue = strength
    n, device = x.shape[0], x.device
    on = (draw_uniform(g, n, device) < p).view(n, 1, 1, 1)
    fb = _u(n, 1 - b, 1 + b, g, device).view(n, 1, 1, 1)
    fc = _u(n, 1 - c, 1 + c, g, device).view(n, 1, 1, 1)
    y = (x * fb).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * fc + mean).clamp(0, 1)
    if x.shape[1] == 3:
        fs = _u(n, 1 - s, 1 + s, g, device).view(n, 1, 1, 1)
        gray = _gray(y)
        y = ((y - gray) * fs + gray).clamp(0, 1)
        # Hue: rotate the chroma plane in YIQ space by a random angle (|angle| <= 2 pi hue).
        ang = _u(n, -hue, hue, g, device) * 2 * math.pi
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=device)
        q = torch.einsum("ij,njhw->nihw", yiq, y)
        cos, sin = torch.cos(ang).view(n, 1, 1), torch.sin(ang).view(n, 1, 1)
        i2 = q[:, 1] * cos - q[:, 2] * sin
        q2 = q[:, 1] * sin + q[:, 2] * cos
        q = torch.stack([q[:, 0], i2, q2], 1)
        y = torch.einsum("ij,njhw->nihw", torch.linalg.inv(yiq), q).clamp(0, 1)
    return torch.where(on, y, x)


def random_grayscale(x, p, g):
    if x.shape[1] == 1:
        return x
    on = (draw_uniform(g, x.shape[0], x.device) < p).view(-1, 1, 1, 1)
    return torch.where(on, _gray(x).expand_as(x), x)


def gaussian_blur(x, p, g, sigma=(0.1, 2.0)):
    n, c, hgt, _ = x.shape
    k = max(3, int(0.1 * hgt) // 2 * 2 + 1)
    sig = _u(n, *sigma, g, x.device).view(n, 1)
    t = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    ker = torch.exp(-(t.view(1, -1) ** 2) / (2 * sig**2))
    ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, k]
    y = x.reshape(1, n * c, hgt, -1)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), ker.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), ker.view(n * c, 1, k, 1), groups=n * c)
    on = (draw_uniform(g, n, x.device) < p).view(n, 1, 1, 1)
    return torch.where(on, y.view_as(x), x)


class SimCLRViews:
    """uint8 [B, C, H, W] -> ``n_views`` normalised float views [B, C, size, size]."""

    def __init__(
        self,
        size: int,
        n_views: int = 2,
        scale=None,
        ratio=(3 / 4, 4 / 3),
        flip_p=0.5,
        jitter=(0.4, 0.4, 0.4, 0.1),
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=None,
    ):
        self.size, self.n_views = size, n_views
        self.scale = scale or ((0.08, 1.0) if size >= 64 else (0.2, 1.0))
        self.ratio, self.flip_p, self.jitter, self.jitter_p, self.gray_p = ratio, flip_p, jitter, jitter_p, gray_p
        self.blur_p = (0.5 if size >= 64 else 0.0) if blur_p is None else blur_p

    def raw_view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One augmented view in [0, 1], before normalisation."""
        x = random_resized_crop_flip(x, self.size, self.scale, self.ratio, self.flip_p, g)
        x = color_jitter(x, self.jitter, self.jitter_p, g)
        x = random_grayscale(x, self.gray_p, g)
        if self.blur_p > 0:
            x = gaussian_blur(x, self.blur_p, g)
        return x

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return normalize(self.raw_view(x, g))

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        x = to_float(images)
        return [self.view(x, g) for _ in range(self.n_views)]


class AutoAugmentViews:
    """AutoAugment (Cubuk et al. 2019, CIFAR-10 policy; torchvision's implementation) on each uint8
    image, then ``base``'s views. Each image draws its own sub-policy; the draws come from a seed
    taken from ``g`` (one per sample), so views stay reproducible from (seed, epoch, step)."""

    def __init__(self, base: SimCLRViews):
        from torchvision.transforms import v2  # AutoAugment only (ImCLR's option)

        self.base, self.n_views = base, base.n_views
        self.policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)

    def _policy(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.policy(image)

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        views = []
        for _ in range(self.n_views):
            seeds = draw_int(g, 2**62, len(images), images.device).tolist()  # one per sample
            with torch.random.fork_rng(devices=[]):
                x = torch.stack([self._policy(im, s) for im, s in zip(images, seeds)])
            views.append(self.base.view(to_float(x), g))
        return views


def eval_view(images: torch.Tensor) -> torch.Tensor:
    """The un-augmented, normalised image used for kNN and linear evaluation."""
    return normalize(to_float(images))


def pipeline(cfg, view) -> SimCLRViews | None:
    """The augmentation one ``View`` asks for at its size (None: the plain normalised image)."""
    d, size = cfg.data, view.size or cfg.data.image_size
    if view.augment == "configured":
        return SimCLRViews(size, 1, scale=d.crop_scale, flip_p=d.flip_p, jitter_p=d.jitter_p, blur_p=d.blur_p)
    if view.augment == "paper":
        return SimCLRViews(size, 1)
    if view.augment == "crop_flip":
        return SimCLRViews(size, 1, scale=(0.5, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    return None


class RecipeViews:
    """uint8 [B, C, H, W] -> one normalised float view per ``View`` of a method's recipe, each drawn
    from ``g`` in the recipe's order (so a view is a function of (seed, epoch, step) alone)."""

    def __init__(self, cfg, views: list):
        self.views = list(views)
        self.pipelines = [pipeline(cfg, v) for v in self.views]
        pairs = zip(self.views, self.pipelines)
        self.auto = {i: AutoAugmentViews(p) for i, (v, p) in enumerate(pairs) if v.autoaugment and p is not None}

    def one(self, i: int, images: torch.Tensor, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        view, pipe = self.views[i], self.pipelines[i]
        if pipe is None:
            return eval_view(images)
        if i in self.auto:
            return self.auto[i](images, g)[0]
        if view.strong:
            return normalize(strong_augment(pipe.raw_view(x, g), g, 5))
        return pipe.view(x, g)

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        x = to_float(images)
        return [self.one(i, images, x, g) for i in range(len(self.views))]


def views_for(cfg, method) -> RecipeViews:
    """The views ``method.views()`` declares, made as each ``View`` says."""
    return RecipeViews(cfg, method.views())
