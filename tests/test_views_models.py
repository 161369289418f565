import torch
import torchvision

from raycl.data.views import SimCLRViews, eval_view, gaussian_blur
from raycl.models import Backbone, mlp


def test_identity_parameters_leave_the_image_unchanged():
    """Full-size crop, no flip, no jitter/gray/blur: the view is just the normalised image."""
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    v = SimCLRViews(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    (a, b) = v(x, torch.Generator().manual_seed(0))
    assert torch.allclose(a, eval_view(x), atol=1e-5) and torch.allclose(b, eval_view(x), atol=1e-5)


def test_flip_only_mirrors():
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    v = SimCLRViews(8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    (a, _) = v(x, torch.Generator().manual_seed(0))
    assert torch.allclose(a, eval_view(x).flip(-1), atol=1e-5)


def test_views_are_random_per_sample_and_reproducible():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    v = SimCLRViews(32, blur_p=1.0)
    a1, b1 = v(x, torch.Generator().manual_seed(3))
    a2, b2 = v(x, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.allclose(a1, b1)
    assert a1.shape == (8, 3, 32, 32)
    same = x[:1].expand(8, -1, -1, -1)
    c, _ = v(same, torch.Generator().manual_seed(4))
    assert not torch.allclose(c[0], c[1])   # each sample draws its own parameters


def test_blur_keeps_constant_images_and_smooths_noise():
    const = torch.full((2, 1, 32, 32), 0.7)
    assert torch.allclose(gaussian_blur(const, 1.0, torch.Generator().manual_seed(0)), const, atol=1e-6)
    noise = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert gaussian_blur(noise, 1.0, torch.Generator().manual_seed(0)).std() < noise.std()


def test_backbone_matches_torchvision_resnets():
    for arch in ("resnet18", "resnet50"):
        ours = Backbone(arch, in_channels=3, stem="imagenet", width=64)
        ref = getattr(torchvision.models, arch)()
        ref.fc = torch.nn.Identity()
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
        ours.load_state_dict(ref.state_dict())
        ours.eval(), ref.eval()
        x = torch.randn(2, 3, 64, 64)
        assert torch.allclose(ours(x), ref(x))


def test_small_stem_one_channel_and_width():
    m = Backbone("resnet18", in_channels=1, stem="small", width=16)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, torch.nn.Identity)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, m.out_dim) == (2, 128)
    assert Backbone("resnet50", 1, "small", 32).out_dim == 1024


def test_projection_mlp_layout():
    h = mlp(8, 16, 4)
    kinds = [type(m).__name__ for m in h]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert mlp(8, 16, 4, layers=3, bn_last=True)(torch.randn(5, 8)).shape == (5, 4)
