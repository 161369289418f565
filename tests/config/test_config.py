import subprocess
import sys

import pytest
import yaml

from raycl.config import Config, apply_overrides, from_dict, load_config
from raycl.errors import ConfigError


def err(raw=None, overrides=()):
    with pytest.raises(ConfigError) as e:
        from_dict(apply_overrides(raw or {}, list(overrides)))
    return str(e.value)


def test_defaults_validate_and_round_trip():
    cfg = from_dict({})
    assert isinstance(cfg, Config)
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize("override, field, hint", [
    ("method.temperature=0", "method.temperature", "> 0"),
    ("method.temperature=-0.5", "method.temperature", "> 0"),
    ("optim.base_lr=-0.1", "optim.base_lr", ">= 0"),
    ("run.epochs=0", "run.epochs", ">= 1"),
    ("data.batch_size=255", "data.batch_size", "divisible"),
    ("distributed.zero_stage=3", "distributed.zero_stage", "one of 0, 1, 2"),
    ("optim.name=adam", "optim.name", "'sgd', 'lars'"),
    ("data.batch_size=abc", "data.batch_size", "an integer"),
    ("data.batch_size=2.5", "data.batch_size", "an integer"),
    ("distributed.use_gpu=1", "distributed.use_gpu", "true or false"),
    ("model.widht=32", "model.widht", "allowed keys in 'model'"),
    ("method.name=byol", "method.name", "available: clsa, finetune, imclr, interclr, linear_eval, moco_v2, simclic, simclr, supcon, supervised_ce, tcl"),
    ("optim.trust_coefficient=0", "optim.trust_coefficient", "> 0"),
])
def test_bad_values_name_the_field(override, field, hint):
    msg = err(overrides=[override])
    assert field in msg and hint in msg, msg


def test_batch_divisibility_accounts_for_accumulation():
    msg = err(overrides=["data.batch_size=256", "distributed.workers=2", "distributed.grad_accum=3"])
    assert "2 x 3 = 6" in msg and "252" in msg and "258" in msg


def test_unknown_section_and_missing_dataset_path(tmp_path):
    assert "allowed sections" in err({"trainer": {}})
    assert "data.path" in err(overrides=["data.dataset=parquet"])
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as e:   # checked where the user gave it, on the driver
        load_config(None, ["data.dataset=parquet", f"data.path={missing}"])
    assert "data.path" in str(e.value) and "does not exist" in str(e.value) and str(missing) in str(e.value)
    # a worker rebuilds the driver's config without touching any filesystem
    assert from_dict(apply_overrides({}, ["data.dataset=parquet", f"data.path={missing}"])).data.path == str(missing)


def test_paths_are_made_absolute_against_the_working_directory_and_urls_left_alone(tmp_path, monkeypatch):
    import os

    (tmp_path / "shards" / "train").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.dataset=parquet", "data.path=shards/train", "data.eval_path=./shards/../shards/train",
                             "run.storage_path=runs", "run.log_dir=logs/tb"])
    assert cfg.data.path == cfg.data.eval_path == str(tmp_path / "shards" / "train")
    assert (cfg.run.storage_path, cfg.run.log_dir) == (str(tmp_path / "runs"), str(tmp_path / "logs" / "tb"))
    home = load_config(None, ["run.storage_path=~/raycl_runs"]).run.storage_path
    assert home == os.path.join(os.path.expanduser("~"), "raycl_runs")
    for url in ("s3://bucket/runs", "memory://runs", "file:///tmp/runs"):
        assert load_config(None, [f"run.storage_path={url}"]).run.storage_path == url
    assert load_config(None, []).run.log_dir is None
    assert load_config(None, []).run.storage_path == home   # the default too


def test_lars_zero_stage_combinations():
    for stage in (0, 1, 2):
        from_dict(apply_overrides({}, ["optim.name=lars", f"distributed.zero_stage={stage}"]))
    msg = err(overrides=["optim.name=lars", "distributed.zero_stage=0", "distributed.precision=bf16",
                         "distributed.use_gpu=true"])
    assert "distributed.zero_stage" in msg and "lars" in msg
    assert "one of 0, 1, 2" in err(overrides=["optim.name=lars", "distributed.zero_stage=3"])


def test_overrides_leave_the_base_config_alone():
    base = {"method": {"name": "simclr"}}
    a = apply_overrides(base, ["method.name=moco_v2", "method.shuffle_bn=true"])
    b = apply_overrides(base, ["method.name=supcon"])
    assert base == {"method": {"name": "simclr"}}
    assert a["method"] == {"name": "moco_v2", "shuffle_bn": True} and b["method"] == {"name": "supcon"}


def test_overrides_are_typed():
    cfg = from_dict(apply_overrides({}, ["optim.base_lr=0.05", "data.drop_last=true", "data.num_samples=null"]))
    assert cfg.optim.base_lr == 0.05 and cfg.data.drop_last is True and cfg.data.num_samples is None
    assert "section.key=value" in err(overrides=["nodot=1"])


def test_linear_scaling_and_micro_batch():
    cfg = from_dict(apply_overrides({}, ["data.batch_size=4096", "optim.base_lr=0.3", "distributed.workers=2",
                                          "distributed.grad_accum=4", "run.epochs=100",
                                          "optim.warmup_epochs=10"]))
    assert cfg.lr == pytest.approx(4.8)
    assert cfg.micro_batch == 512


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


@pytest.mark.slow  # a CLI in a subprocess
def test_cli_config_show_prints_resolved_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  base_lr: 0.2\n")
    out = subprocess.run([sys.executable, "-m", "raycl", "config", "show", str(path), "run.epochs=7"],
                         capture_output=True, text=True, check=True).stdout
    shown = yaml.safe_load(out)
    assert shown["optim"]["base_lr"] == 0.2 and shown["run"]["epochs"] == 7
    assert set(shown) == {"data", "model", "method", "optim", "distributed", "eval", "run"}


@pytest.mark.slow  # a CLI in a subprocess
def test_cli_bad_value_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  temperature: 0.1\n")
    p = subprocess.run([sys.executable, "-m", "raycl", "config", "show", str(path), "method.temperature=0"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "method.temperature" in p.stderr


def test_each_method_owns_its_keys_and_names_itself_when_refusing_another_methods():
    from raycl.methods import REGISTRY, MethodConfig

    assert "method.bank_size: unknown key; allowed keys in 'method' (method simclr): name, temperature, views" \
        in err(overrides=["method.bank_size=100"])
    # every key of a method is accepted by it and refused by a method without it (the section is its model)
    for name, cls in REGISTRY.items():
        own = [k for k in cls.Config.model_fields if k not in MethodConfig.model_fields]
        for other, other_cls in REGISTRY.items():
            for key in own:
                if key not in other_cls.Config.model_fields:
                    assert f"method.{key}: unknown key" in err(overrides=[f"method.name={other}", f"method.{key}=1"])
    moco = from_dict(apply_overrides({}, ["method.name=moco_v2", "method.queue_size=512"])).method
    assert type(moco).__name__ == "MoCoV2Config" and moco.queue_size == 512 and moco.key_momentum == 0.999


# (overrides, whether raycl accepts them): per-field rules only, which the schema can say too
SCHEMA_CASES = [
    ([], True), (["method.name=interclr", "method.bank_size=100", "method.num_clusters=4",
                  "method.num_negatives=8"], True),
    (["method.name=clsa", "method.strong_sizes=[32, 16]"], True), (["distributed.workers=[2, 4]",
                                                                     "data.batch_size=24"], True),
    (["method.queue_size=4"], False), (["method.name=moco_v2", "method.queue_size=0"], False),
    (["method.name=moco_v2", "method.queue_size=4"], True), (["method.temperature=0"], False),
    (["distributed.zero_stage=3"], False), (["data.channels=2"], False), (["optim.name=adam"], False),
    (["model.widht=3"], False), (["run.loggers=[neptune]"], False), (["run.loggers=[mlflow]"], True),
    (["data.batch_size=2.5"], False), (["eval.knn_k=0"], False), (["method.name=tcl", "method.supervised=1"], False),
    (["method.name=byol"], False),
]


@pytest.mark.parametrize("overrides, accepted", SCHEMA_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_the_json_schema_and_raycl_agree(overrides, accepted):
    """`raycl config schema` is what an editor checks YAML with: it must accept and refuse what
    raycl does (jsonschema, an independent validator, reads the schema)."""
    import jsonschema

    from raycl.config import schema

    raw = apply_overrides({}, overrides)
    try:
        from_dict(raw)
        by_raycl = True
    except ConfigError:
        by_raycl = False
    by_schema = jsonschema.Draft202012Validator(schema()).is_valid(raw)
    assert by_raycl == accepted and by_schema == accepted, (by_raycl, by_schema)


def test_a_checkpoint_config_of_a_raycl_before_per_method_sections_still_loads():
    """An older checkpoint's `method` holds every method's keys (one flat bag); such a stored config loads,
    keeping the named method's own keys, while a user's config with another method's key is refused."""
    from raycl.config import stored_config

    flat = {"name": "moco_v2", "temperature": 0.2, "views": None, "queue_size": 256, "key_momentum": 0.99,
            "symmetric": False, "shuffle_bn": True, "bank_size": None, "num_clusters": 10000, "k1": 1.0,
            "strong_sizes": [96], "concat_k": 2, "perturbation": "dropout", "lam": 0.75}
    cfg = stored_config({"method": dict(flat), "run": {"storage_path": "runs"}})
    assert cfg.method.name == "moco_v2" and cfg.method.queue_size == 256 and cfg.method.shuffle_bn
    assert cfg.run.storage_path.startswith("/")           # an older raycl's relative path, read from here
    assert "method.bank_size: unknown key" in err({"method": dict(flat)})


def test_overrides_may_follow_options_on_the_command_line():
    from raycl.cli import parse

    args = parse(["finetune", "ck", "run.seed=1", "--label-fraction", "0.1", "run.epochs=5", "optim.base_lr=0.05"])
    assert args.overrides == ["run.seed=1", "run.epochs=5", "optim.base_lr=0.05"] and args.label_fraction == 0.1
    with pytest.raises(ConfigError, match="unrecognized arguments: --bogus"):
        parse(["finetune", "ck", "--label-fraction", "0.1", "--bogus"])


def test_a_loaded_config_is_frozen_and_a_changed_value_is_a_new_validated_config():
    from pydantic import ValidationError

    cfg = load_config(None, ["optim.base_lr=0.2"])
    with pytest.raises(ValidationError, match="frozen"):
        cfg.optim.base_lr = -1.0  # type: ignore[misc]
    assert cfg.with_overrides("optim.base_lr=0.4").optim.base_lr == 0.4 and cfg.optim.base_lr == 0.2
    with pytest.raises(ConfigError, match="optim.base_lr: must be >= 0"):
        cfg.with_overrides("optim.base_lr=-1")
    with pytest.raises(ConfigError, match="cannot train on 1 workers"):
        cfg.plan(1)  # a fixed run of 2 workers
    assert cfg.plan().micro_batch == 128 and cfg.plan().workers == 2
