import pytest
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


@pytest.mark.parametrize("kind", ["simclr", "clsa", "autoaugment"])
def test_a_samples_views_do_not_depend_on_how_many_workers_share_the_batch(kind):
    """Each worker draws for the whole global batch from the same seed and keeps its rows: the views
    of 3 workers' slices, put together, are the views one worker makes of the whole batch."""
    from raycl.data.draws import SampleStream
    from raycl.config import load_config
    from raycl.data.views import AutoAugmentViews, views_for
    from raycl.methods import build_method

    clsa = load_config(None, ["method.name=clsa", "method.strong_sizes=[8]", "data.image_size=16"])
    views = {"simclr": SimCLRViews(16), "clsa": views_for(clsa, build_method(clsa, 3)),
             "autoaugment": AutoAugmentViews(SimCLRViews(16, scale=(0.5, 1.0)))}[kind]
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)

    def gen():
        return torch.Generator().manual_seed(7)

    whole = views(x, SampleStream(gen(), 12, 0))
    parts = [views(x[r * 4:(r + 1) * 4], SampleStream(gen(), 12, r * 4)) for r in range(3)]
    for v, w in enumerate(whole):
        assert torch.equal(torch.cat([p[v] for p in parts]), w)
    # and a plain generator on one worker draws the same as the stream of one worker
    assert all(torch.equal(a, b) for a, b in zip(views(x, gen()), whole))
    # the test can fail: a worker drawing only for its own rows gets other views
    assert not torch.equal(views(x[4:8], gen())[0], whole[0][4:8])


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


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("backbone, size, extra, classes, count, delta_k2", [
    # ImCLR Table 1: VGG16-CIFAR100 15,038,116 -> 15,300,260; WRN-STL10 (16-8) 11,002,330 -> 11,048,410;
    # WRN-CIFAR10-SSL (28-2) 1,467,610 -> +0. PRN18 +0 (its absolute count is the usual CIFAR
    # PreAct-ResNet-18's, 11,217,316 with 100 classes; the paper's Keras count differs by 4,928).
    ("vgg16", 32, {}, 100, 15_038_116, 262_144),
    ("wrn16_8", 96, {"pool": "avg8"}, 10, 11_002_330, 46_080),
    ("wrn28_2", 32, {}, 10, 1_467_610, 0),
    ("preact_resnet18", 32, {}, 100, 11_217_316, 0),
])
def test_imclr_backbones_parameter_counts(backbone, size, extra, classes, count, delta_k2):
    from raycl.config import from_dict
    from raycl.models import build_backbone

    cfg = from_dict({"model": {"backbone": backbone, **extra}, "data": {"image_size": size}})
    counts = []
    for k in (1, 2, 3):
        m = build_backbone(cfg, 3, concat=k)
        counts.append(n_params(m) + m.out_dim * classes + classes)
        assert m(torch.randn(2, 3, size, size * k)).shape == (2, m.out_dim)
    assert counts[0] == count and counts[1] - counts[0] == delta_k2 and counts[2] - counts[1] == delta_k2


def test_backbone_errors():
    from raycl.config import from_dict
    from raycl.errors import ConfigError
    from raycl.models import build_backbone

    with pytest.raises(ConfigError, match="model.backbone.*'vgg19'"):
        from_dict({"model": {"backbone": "vgg19"}})
    with pytest.raises(ConfigError, match="at least 32x32"):
        build_backbone(from_dict({"model": {"backbone": "vgg16"}, "data": {"image_size": 28}}), 1)
    with pytest.raises(ConfigError, match="6n"):
        build_backbone(from_dict({"model": {"backbone": "wrn12_2"}}), 1)


def test_every_epoch_draws_new_augmentations_and_a_replayed_step_the_same():
    """Augmentation randomness is a function of (seed, epoch, step): the same step of another epoch
    crops differently (else every epoch trains on the same views), a resumed step replays exactly."""
    from raycl.data.demo import demo_sources
    from raycl.train.worker import aug_generator

    images = torch.from_numpy(demo_sources(0.2, num_samples=64)[0].read_positions(torch.arange(16).numpy()).images)
    views = SimCLRViews(28)

    def draw(seed, epoch, step):
        return torch.stack(views(images, aug_generator(seed, epoch, step, "cpu")))

    first = draw(0, 0, 3)
    assert torch.equal(first, draw(0, 0, 3))
    for other in (draw(0, 1, 3), draw(0, 2, 3), draw(0, 0, 4), draw(1, 0, 3)):
        changed = (first - other).abs().flatten(2).amax(2) > 1e-3   # per view and sample
        assert changed.float().mean() > 0.9, changed


def test_the_data_section_sets_the_contrastive_augmentation_strengths():
    from raycl.config import load_config
    from raycl.data.views import SimCLRViews, views_for
    from raycl.methods import build_method

    cfg = load_config(None, ["data.crop_scale=[0.5, 1]", "data.flip_p=0", "data.jitter_p=0.25", "data.blur_p=0.1"])
    views = views_for(cfg, build_method(cfg, 1)).pipelines
    assert all(isinstance(v, SimCLRViews) for v in views) and len(views) == 2
    assert [(list(v.scale), v.flip_p, v.jitter_p, v.blur_p) for v in views] == [([0.5, 1.0], 0.0, 0.25, 0.1)] * 2
    default = views_for(load_config(None, []), build_method(load_config(None, []), 1)).pipelines
    assert [(v.scale, v.flip_p, v.jitter_p, v.blur_p) for v in default] == [((0.2, 1.0), 0.5, 0.8, 0.0)] * 2
    # no flips: every view of a left-right asymmetric image keeps its orientation (crop at full scale)
    img = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    img[..., :14] = 255
    cfg = load_config(None, ["data.crop_scale=[1, 1]", "data.flip_p=0", "data.jitter_p=0"])
    v1, v2 = views_for(cfg, build_method(cfg, 1))(img, torch.Generator().manual_seed(0))
    assert bool((v1[..., 3:11].mean((1, 2, 3)) > v1[..., 17:25].mean((1, 2, 3))).all())


def test_imclrs_autoaugment_option_reaches_its_views_drawn_as_a_hand_composition():
    """method.autoaugment: each of ImCLR's views is AutoAugment (torchvision's CIFAR-10 policy, a seed
    per image drawn from the step's generator), then the supervised recipe's crop and flip."""
    from torchvision.transforms import v2

    from raycl.config import load_config
    from raycl.data.demo import demo_sources
    from raycl.data.draws import draw_int
    from raycl.data.views import to_float, views_for
    from raycl.methods import build_method

    images = torch.from_numpy(demo_sources(0.2, num_samples=64)[0].read_positions(torch.arange(8).numpy()).images)
    drawn = {}
    for auto in (True, False):
        cfg = load_config(None, ["method.name=imclr", f"method.autoaugment={str(auto).lower()}", "model.width=8"])
        drawn[auto] = views_for(cfg, build_method(cfg, 1))(images, torch.Generator().manual_seed(3))
    g, policy = torch.Generator().manual_seed(3), v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    crop_flip = SimCLRViews(28, 1, scale=(0.5, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    by_hand = []
    for _ in drawn[True]:
        seeds = draw_int(g, 2**62, len(images), images.device).tolist()
        augmented = []
        for im, s in zip(images, seeds):
            torch.manual_seed(s)
            augmented.append(policy(im))
        by_hand.append(crop_flip.view(to_float(torch.stack(augmented)), g))
    assert len(by_hand) == len(drawn[True]) >= 1 and all(torch.equal(a, b) for a, b in zip(drawn[True], by_hand))
    assert not torch.equal(drawn[True][0], drawn[False][0])
