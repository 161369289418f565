"""`raycl export`: a checkpoint's backbone as tensors that torchvision (or anything reading
safetensors) loads without raycl, checked by loading them there and comparing features."""
import json

import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

from raycl.cli import main
from raycl.config import load_config
from raycl.methods import build_method
from raycl.models import Backbone
from raycl.train.checkpoint import MODEL_FILE


def checkpoint(tmp_path, *overrides):
    """A checkpoint directory as training writes it (model.pt: config + state_dict), its BatchNorm
    statistics made non-trivial so an export without buffers would not match."""
    cfg = load_config(None, ["model.proj_hidden_dim=32", "model.proj_out_dim=16", *overrides])
    torch.manual_seed(0)
    method = build_method(cfg, cfg.data.channels)
    for name, buf in method.named_buffers():
        if "running_mean" in name or "running_var" in name:
            buf.copy_(torch.rand_like(buf) + (0.5 if "var" in name else -0.5))
    folder = tmp_path / "ck"
    folder.mkdir()
    torch.save({"config": cfg.to_dict(), "state_dict": method.state_dict()}, folder / MODEL_FILE)
    return folder, cfg, method


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_resnet_loads_the_export_strictly_but_fc_and_gives_the_same_features(tmp_path, capsys, arch):
    folder, cfg, method = checkpoint(tmp_path, f"model.backbone={arch}", "model.stem=imagenet", "model.width=64",
                                     "data.channels=3", "data.image_size=64")
    out = tmp_path / f"{arch}.pth"
    assert main(["export", str(folder), str(out), "--format", "torchvision"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["torchvision_loadable"] and summary["format"] == "torchvision"
    state = torch.load(out, weights_only=True)
    model = getattr(torchvision.models, arch)()
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    if arch == "resnet50":
        return   # the names and shapes are the claim; one forward comparison below is enough
    model.fc = torch.nn.Identity()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), method.backbone.eval()(x))


def test_safetensors_export_holds_every_backbone_tensor_and_what_built_it(tmp_path):
    folder, cfg, method = checkpoint(tmp_path, "model.width=8")
    out = tmp_path / "backbone.safetensors"
    assert main(["export", str(folder), str(out)]) == 0
    tensors = load_file(out)
    expect = method.backbone.state_dict()
    assert tensors.keys() == expect.keys() and all(torch.equal(tensors[k], expect[k]) for k in expect)
    with safe_open(out, "pt") as fh:
        meta = fh.metadata()
    assert (meta["backbone"], meta["stem"], meta["width"], meta["channels"]) == ("resnet18", "small", "8", "1")
    rebuilt = Backbone("resnet18", in_channels=1, stem="small", width=8)   # from the metadata alone
    rebuilt.load_state_dict(tensors)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), method.backbone.eval()(x))


def test_a_backbone_torchvision_cannot_hold_is_one_line_naming_what_differs(tmp_path, capsys):
    folder, _, _ = checkpoint(tmp_path, "model.width=8")
    assert main(["export", str(folder), str(tmp_path / "x.pth"), "--format", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.stem small (torchvision: imagenet)" in err and \
        "model.width 8 (torchvision: 64)" in err and "data.channels 1 (torchvision: 3)" in err, err
    assert not (tmp_path / "x.pth").exists()
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "y.safetensors")]) == 2
    assert "no model.pt" in capsys.readouterr().err
    assert main(["export", str(folder), str(tmp_path / "missing" / "y.safetensors")]) == 2
    assert "OUT: the folder" in capsys.readouterr().err
