"""CLSA's 14-op strong augmentation: colour ops against PIL's definitions, geometric ops against
exact pixel identities, and the op draw against its stated probabilities."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from raycl.data import strong_aug as S


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 60, 16)[None, :, None, None]
    return np.clip(rng.normal(120, 30, (6, 16, 16, 3)) + ramp, 10, 230).astype(np.uint8)


def as_tensor(imgs):
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255


def max_level_diff(ours, imgs, pil_fn):
    ref = np.stack([np.asarray(pil_fn(Image.fromarray(im))) for im in imgs]).astype(np.float64)
    return np.abs((ours.permute(0, 2, 3, 1).numpy() * 255).round() - ref).max()


F03 = torch.full((6,), 0.3)


@pytest.mark.parametrize("ours, pil, tol", [
    (lambda x: S.equalize(x), ImageOps.equalize, 0),
    (lambda x: S.invert(x), ImageOps.invert, 0),
    (lambda x: S.solarize(x, torch.full((6,), 128.0)), lambda im: ImageOps.solarize(im, 128), 0),
    (lambda x: S.posterize(x, torch.full((6,), 5)), lambda im: ImageOps.posterize(im, 5), 0),
    # PIL rounds intermediate values to 8 bits: one level of difference allowed
    (lambda x: S.auto_contrast(x), ImageOps.autocontrast, 1),
    (lambda x: S.contrast(x, F03), lambda im: ImageEnhance.Contrast(im).enhance(0.3), 1),
    (lambda x: S.color(x, F03), lambda im: ImageEnhance.Color(im).enhance(0.3), 1),
    (lambda x: S.brightness(x, F03), lambda im: ImageEnhance.Brightness(im).enhance(0.3), 1),
    (lambda x: S.sharpness(x, F03), lambda im: ImageEnhance.Sharpness(im).enhance(0.3), 1),
])
def test_colour_ops_match_pil(images, ours, pil, tol):
    assert max_level_diff(ours(as_tensor(images)), images, pil) <= tol


def test_colour_ops_are_not_identities(images):
    x = as_tensor(images)
    for name in ("equalize", "auto_contrast", "solarize", "posterize", "contrast", "sharpness"):
        assert not torch.allclose(S.apply_op(name, x, S.magnitudes(name, 6, torch.Generator(), "cpu")), x)


def test_geometric_ops(images):
    x = as_tensor(images)
    zero = torch.zeros(6)
    for name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
        assert torch.allclose(S.apply_op(name, x, zero), x, atol=1e-5)
    assert torch.allclose(S.rotate(x, torch.full((6,), 90.0)), torch.rot90(x, 1, (2, 3)), atol=1e-5)
    t = S.translate(x, torch.full((6,), 0.25), 0)          # 4 of 16 pixels to the left, grey fill
    assert torch.allclose(t[..., :12], x[..., 4:], atol=1e-5)
    assert torch.allclose(t[..., 12:], torch.full_like(t[..., 12:], S.FILL))
    s = S.shear(x, torch.full((6,), 0.3), 0)
    row = 7   # output row y reads input x + 0.3 y: rows shift by different amounts
    assert not torch.allclose(s[..., row, :], x[..., row, :])


def test_each_op_is_drawn_with_its_probability():
    """One draw, always applied, on 1,400 copies of an image: Invert (a pure function) shows up
    for about 1/14 of them."""
    img = torch.rand(1, 3, 8, 8)
    x = img.expand(1400, -1, -1, -1).contiguous()
    out = S.strong_augment(x, torch.Generator().manual_seed(0), n_ops=1, p=1.0)
    inverted = (out - (1 - img)).abs().flatten(1).amax(1) < 1e-6
    frac = inverted.float().mean().item()
    assert abs(frac - 1 / 14) < 3 * (1 / 14 * 13 / 14 / 1400) ** 0.5
    kept = (out - img).abs().flatten(1).amax(1) < 1e-6     # p = 0.5: about half untouched
    out5 = S.strong_augment(x, torch.Generator().manual_seed(1), n_ops=1, p=0.5)
    untouched = ((out5 - img).abs().flatten(1).amax(1) < 1e-6).float().mean().item()
    assert 0.45 < untouched < 0.6 and kept.float().mean() < 0.1


def test_strong_augment_is_reproducible_and_in_range():
    x = torch.rand(32, 3, 16, 16)
    a = S.strong_augment(x, torch.Generator().manual_seed(3))
    b = S.strong_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, S.strong_augment(x, torch.Generator().manual_seed(4)))


def test_clsa_views_are_two_weak_views_then_a_strong_view_per_size_drawn_in_that_order():
    """CLSA's recipe made by the data pipeline equals the views composed by hand from SimCLR's
    pipeline at its paper strengths and the strong augmentation, drawn from one generator in order."""
    from raycl.config import load_config
    from raycl.data.views import SimCLRViews, normalize, to_float, views_for
    from raycl.methods import build_method

    cfg = load_config(None, ["method.name=clsa", "method.strong_sizes=[20, 12]", "data.crop_scale=[0.9, 1]"])
    imgs = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    views = views_for(cfg, build_method(cfg, 1))(imgs, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(4, 1, 28, 28), (4, 1, 28, 28), (4, 1, 20, 20), (4, 1, 12, 12)]
    g, x = torch.Generator().manual_seed(0), to_float(imgs)
    weak = SimCLRViews(28)  # the paper's strengths: data.crop_scale is not CLSA's
    by_hand = [weak.view(x, g), weak.view(x, g)]
    by_hand += [normalize(S.strong_augment(SimCLRViews(s).raw_view(x, g), g, 5)) for s in (20, 12)]
    assert all(torch.equal(a, b) for a, b in zip(views, by_hand))
