"""Every bad input gets one line, ``raycl: error: ...``, exit code 2 and no traceback, before Ray
starts. One row per input: (id, what to run, a phrase the line must contain).

A row's "what" is either a CLI argv (run through ``raycl.cli.main`` in this process: an uncaught
exception fails the test with its traceback) or a Python call that must raise a RayclError."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from raycl.errors import RayclError

DEMO = "{demo}"


def cs(*overrides):
    """`raycl config show` of the demo config with overrides."""
    return ["config", "show", DEMO, *overrides]


def sweep_file(space, **extra):
    return {"data": {"num_samples": 256, "batch_size": 64}, "distributed": {"workers": 2},
            "run": {"epochs": 2}, "sweep": {"space": space, **extra}}


ROWS = [
    # -- config values --------------------------------------------------------------------------
    ("temperature-nan", cs("method.temperature=.nan"), "method.temperature: expected a finite number"),
    ("base-lr-inf", cs("optim.base_lr=.inf"), "optim.base_lr: expected a finite number"),
    ("eval-fraction-nan", cs("data.eval_fraction=.nan"), "data.eval_fraction: expected a finite number"),
    ("cpus-inf", cs("distributed.cpus_per_worker=.inf"), "distributed.cpus_per_worker: expected a finite"),
    ("batch-huge", cs("data.batch_size=1000000000000000000000"), "data.batch_size: must be <="),
    ("image-size-huge", cs("data.image_size=1000000000"), "data.image_size: must be <= 4096"),
    ("workers-huge", cs("distributed.workers=1000000"), "distributed.workers: must be <= 4096"),
    ("epochs-huge", cs("run.epochs=10000000000"), "run.epochs: must be <="),
    ("temperature-zero", cs("method.temperature=0"), "method.temperature: must be > 0"),
    ("base-lr-negative", cs("optim.base_lr=-1"), "optim.base_lr: must be >= 0"),
    ("epochs-zero", cs("run.epochs=0"), "run.epochs: must be >= 1"),
    ("batch-indivisible", cs("data.batch_size=255"), "not divisible by distributed.workers"),
    ("zero-stage-3", cs("distributed.zero_stage=3"), "distributed.zero_stage: expected one of 0, 1, 2"),
    ("optimizer-unknown", cs("optim.name=adam"), "optim.name: expected one of 'sgd', 'lars'"),
    ("batch-string", cs("data.batch_size=abc"), "data.batch_size: expected an integer"),
    ("key-typo", cs("model.widht=32"), "model.widht: unknown key"),
    ("method-unknown", cs("method.name=byol"), "method.name: unknown method 'byol'"),
    ("override-bad-yaml", cs("optim.milestones=[1,2"), "the value is not valid YAML"),
    ("override-no-equals", cs("optim.base_lr"), "expected section.key=value"),
    ("override-three-parts", cs("a.b.c=1"), "expected section.key=value"),
    ("section-unknown", cs("trainer.x=1"), "trainer: unknown section"),
    ("milestones-missing", cs("optim.schedule=step"), "optim.milestones: the step schedule needs"),
    ("lars-exclude-regex", cs("optim.lars_exclude=['(']"), "optim.lars_exclude: '(' is not a valid regular"),
    ("bf16-on-cpu", cs("distributed.precision=bf16"), "distributed.precision: bf16 needs"),
    ("parquet-without-path", cs("data.dataset=parquet"), "data.path: required"),
    ("parquet-path-missing", cs("data.dataset=parquet", "data.path=/nonexistent/raycl"), "does not exist"),
    ("interclr-no-bank-size", cs("method.name=interclr"), "method.bank_size: interclr's memory bank"),
    ("tcl-k1-low", cs("method.name=tcl", "method.k1=0.5"), "method.k1: TCL needs"),
    ("checkpoint-every-too-big", cs("run.checkpoint_every=50", "run.epochs=10"), "run.checkpoint_every: 50"),
    ("final-lr-above-peak", cs("optim.final_lr=100"), "optim.final_lr: 100"),
    ("views-one", cs("method.views=1"), "method.views: must be >= 2"),
    ("channels-two", cs("data.channels=2"), "data.channels: expected one of 1, 3"),
    ("num-samples-zero", cs("data.num_samples=0"), "data.num_samples: must be >= 1"),
    ("list-as-section", cs("data=[1]"), "expected section.key=value"),
    ("crop-scale-reversed", cs("data.crop_scale=[0.9, 0.2]"), "data.crop_scale: expected [lo, hi] with 0 < lo <= hi"),
    ("flip-p-above-one", cs("data.flip_p=2"), "data.flip_p: must be <= 1"),
    # -- config files ---------------------------------------------------------------------------
    ("yaml-list", ["config", "show", "{tmp}/list.yaml", "optim.base_lr=0.1"], "expected a mapping of sections"),
    ("yaml-scalar", ["config", "show", "{tmp}/scalar.yaml"], "expected a mapping of sections"),
    ("config-directory", ["config", "show", "{tmp}"], "is a directory"),
    ("config-not-utf8", ["config", "show", "{tmp}/latin1.yaml"], "is not UTF-8"),
    ("config-missing", ["config", "show", "{tmp}/nope.yaml"], "does not exist"),
    ("config-malformed", ["config", "show", "{tmp}/malformed.yaml"], "is not valid YAML"),
    ("sections-int-and-str", ["config", "show", "{tmp}/mixed_keys.yaml"], "unknown section"),
    ("section-not-mapping", ["config", "show", "{tmp}/section_scalar.yaml"], "data: expected a mapping of keys"),
    # -- checkpoints ----------------------------------------------------------------------------
    ("eval-no-checkpoint", ["eval", "{tmp}/no-such-run"], "no model.pt"),
    ("eval-truncated", ["eval", "{tmp}/ck_truncated"], "truncated or not a torch file"),
    ("eval-garbage", ["eval", "{tmp}/ck_garbage"], "truncated or not a torch file"),
    ("eval-malicious", ["eval", "{tmp}/ck_evil"], "is not a plain tensor file and was not loaded"),
    ("eval-bare-state-dict", ["eval", "{tmp}/ck_bare"], "a bare state_dict lacks the config"),
    ("eval-other-width", ["eval", "{tmp}/ck_width"], "does not match this model"),
    ("eval-bad-config", ["eval", "{tmp}/ck_badcfg"], "the config stored in model.pt is not valid"),
    ("history-truncated-state", ("history", "{tmp}/ck_state_truncated"), "truncated or not JSON"),
    ("history-not-checkpoint", ("history", "{tmp}"), "is not a raycl checkpoint"),
    # -- data, checked on the driver before Ray starts ------------------------------------------
    ("image-column-int", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_int_image"],
     "column 'image' has type int64"),
    ("index-column-string", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_str_index"],
     "column 'index' has type string"),
    ("index-duplicate", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_dup"], "index 3 appears 2 times"),
    ("index-negative", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_neg"], "negative index -4"),
    ("label-below-minus-one", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_label_neg"], "label -5"),
    ("label-huge", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_label_huge"], "label 10000000000"),
    ("label-null", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_label_null"],
     "column 'label' is null at row 2"),
    ("folder-without-shards", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_empty"],
     "no .parquet shards"),
    ("shard-not-parquet", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_notparquet"],
     "is not a readable Parquet file"),
    ("shard-missing-column", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_nolabel"],
     "lacks column(s) ['label']"),
    ("supcon-unlabeled", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_unlabeled",
                          "method.name=supcon"], "learns from class labels"),
    ("interclr-bank-too-small", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_unlabeled",
                                 "method.name=interclr", "method.bank_size=10", "method.num_clusters=2",
                                 "method.num_negatives=4"], "method.bank_size: 10 rows"),
    ("classifier-label-over-classes", ["train", DEMO, "data.dataset=parquet", "data.path={tmp}/d_labeled",
                                       "method.name=supervised_ce", "method.num_classes=3"], "outside 0..2"),
    # -- every command that reads Parquet checks it first (here: shards a checkpoint's run names) ------
    ("eval-label-huge", ["eval", "{tmp}/ck_d_label_1e9"], "label 1000000000 at row 2 (index 2) is outside"),
    ("eval-label-below-minus-one", ["eval", "{tmp}/ck_d_label_neg"], "label -5 at row 2"),
    ("eval-index-all-zero", ["eval", "{tmp}/ck_d_index_zero"], "index 0 appears 8 times"),
    ("eval-index-negative-range", ["eval", "{tmp}/ck_d_index_range"], "row group 0: negative index -10 at row 0"),
    ("eval-label-null", ["eval", "{tmp}/ck_d_label_null"], "column 'label' is null at row 2"),
    ("eval-shards-gone", ["eval", "{tmp}/ck_d_gone"], "data.path: '{tmp}/d_gone' does not exist"),
    ("views-label-huge", ["views", DEMO, "data.dataset=parquet", "data.path={tmp}/d_label_1e9", "data.num_samples=null",
                          "--out", "{tmp}/v.png"], "label 1000000000 at row 2"),
    ("bench-data-index-duplicate", ["bench", "data", "{tmp}/d_dup"], "index 3 appears 2 times"),
    ("neighbours-label-null", ("neighbours", "{tmp}/ck_d_label_null"), "column 'label' is null at row 2"),
    # -- evaluation commands: refused on the driver, before Ray starts -----------------------------
    ("eval-protocol-unknown", ["eval", "{tmp}/ck_good", "--protocol", "svm"], "--protocol: 'svm' is not one of"),
    ("linear-layer-missing", ["linear", "{tmp}/ck_good", "method.layer=layer9"],
     "method.layer: 'layer9' is not a layer of resnet18"),
    ("linear-other-architecture", ["linear", "{tmp}/ck_width"], "does not match this model"),
    ("linear-unlabeled", ["linear", "{tmp}/ck_d_unlabeled"], "learns from class labels"),
    ("finetune-fraction-zero", ["finetune", "{tmp}/ck_good", "--label-fraction", "0"],
     "--label-fraction: expected a fraction in (0, 1], got 0"),
    ("finetune-fraction-above-one", ["finetune", "{tmp}/ck_good", "--label-fraction", "1.5"], "got 1.5"),
    ("finetune-subset-below-classes", ["finetune", "{tmp}/ck_good", "--label-fraction", "0.001"],
     "fewer than the 10 classes"),
    ("finetune-unlabeled", ["finetune", "{tmp}/ck_d_unlabeled", "--label-fraction", "0.5"], "learns from class labels"),
    ("knn-k-zero", ["knn", "{tmp}/ck_good", "--k", "0"], "--k: expected"),
    ("knn-workers-zero", ["knn", "{tmp}/ck_good", "--workers", "0"], "--workers: expected"),
    ("export-format-unknown", ["export", "{tmp}/ck_good", "{tmp}/b.onnx", "--format", "onnx"], "invalid choice: 'onnx'"),
    ("export-other-architecture", ["export", "{tmp}/ck_width", "{tmp}/b.safetensors"], "does not match this model"),
    ("doctor-out-is-file", ["doctor", "--out", "{tmp}/scalar.yaml"], "--out: '{tmp}/scalar.yaml' is an existing file"),
    ("doctor-flag-unknown", ["doctor", "--quik"], "unrecognized arguments: --quik"),
    # -- runs -------------------------------------------------------------------------------------
    ("run-name-escapes", cs("run.name=../../../../tmp/escaped"), "run.name: '../../../../tmp/escaped' must be one"),
    ("run-name-dotdot", cs("run.name=.."), "run.name: '..' must be one folder name"),
    ("run-name-empty", cs("run.name=' '"), "must be one folder name"),
    ("config-empty-file", ["config", "show", "{tmp}/empty.yaml"], "is empty; write {{}} in it to mean every default"),
    # -- sweeps ---------------------------------------------------------------------------------
    ("sweep-uniform-int", ["sweep", "{tmp}/sw_uniform_int.yaml"], "model.width is not a real-valued field"),
    ("sweep-grid-indivisible", ["sweep", "{tmp}/sw_grid.yaml"], "not divisible by distributed.workers"),
    ("sweep-metric-unknown", ["sweep", "{tmp}/sw_metric.yaml"], "sweep.metric: 'knn_top5' is not reported"),
    ("sweep-malformed", ["sweep", "{tmp}/malformed.yaml"], "is not valid YAML"),
    ("sweep-section-list", ["sweep", "{tmp}/sw_list.yaml"], "sweep: expected a mapping"),
    ("sweep-knn-unlabeled", ["sweep", "{tmp}/sw_unlabeled.yaml"], "knn_top1 cannot be measured"),
    ("sweep-file-list", ["sweep", "{tmp}/list.yaml"], "expected a mapping of sections"),
    ("sweep-num-cpus-zero", ["sweep", "{tmp}/sw_metric.yaml", "--num-cpus", "0"], "--num-cpus"),
    # -- raycl data convert ---------------------------------------------------------------------
    ("convert-rows-zero", ["data", "convert", "{tmp}/imgs", "{tmp}/out0", "--rows-per-shard", "0"],
     "--rows-per-shard: expected an integer >= 1, got 0"),
    ("convert-rows-negative", ["data", "convert", "{tmp}/imgs", "{tmp}/out1", "--rows-per-shard", "-3"],
     "got -3"),
    ("convert-dest-is-file", ["data", "convert", "{tmp}/imgs", "{tmp}/scalar.yaml"], "is an existing file"),
    ("convert-not-an-image", ["data", "convert", "{tmp}/imgs_bad", "{tmp}/out2"], "does not decode as an image"),
    ("convert-folder-missing", ["data", "convert", "{tmp}/nope", "{tmp}/out3"], "does not exist"),
    ("bench-data-no-shards", ["bench", "data", "{tmp}/nope"], "no .parquet shards under"),
    ("bench-quality-seeds-word", ["bench", "quality", "--seeds", "0,one"], "--seeds: expected comma-separated"),
    ("bench-quality-seeds-repeat", ["bench", "quality", "--seeds", "1,1"], "--seeds: '1,1' repeats a value"),
    ("bench-quality-method", ["bench", "quality", "--methods", "simclr,byol"], "no preset for method 'byol'"),
    ("bench-quality-tune-no-config", ["bench", "quality", "--tune"], "--tune: needs a sweep file (--tune FILE) or"),
    ("bench-quality-tune-file-no-sweep", ["bench", "quality", "--tune", "{demo}"], "demo.yaml: no 'sweep' section"),
    ("bench-quality-tune-no-sweep", ["bench", "quality", "--tune", "--config", "{demo}"], "no 'sweep' section"),
    ("bench-quality-out-not-results", ["bench", "quality", "--out", "{tmp}/scalar.yaml"],
     "is not a bench quality results file"),
    ("bench-quality-reuse-not-results", ["bench", "quality", "--reuse", "{tmp}/scalar.yaml"],
     "--reuse: '{tmp}/scalar.yaml' is not a bench quality results file"),
    ("convert-torchvision-unknown", ["data", "convert", "torchvision:Nope", "{tmp}/out4", "--root", "{tmp}"],
     "torchvision.datasets has no dataset class of that name"),
    ("convert-torchvision-absent", ["data", "convert", "torchvision:CIFAR10", "{tmp}/out5", "--root", "{tmp}"],
     "not found under --root"),
    ("convert-torchvision-no-root", ["data", "convert", "torchvision:CIFAR10", "{tmp}/out6"], "--root: torchvision:CIFAR10"),
    ("convert-torchvision-split", ["data", "convert", "torchvision:FashionMNIST", "{tmp}/out7", "--root", "{tmp}",
                                   "--split", "val"], "--split: FashionMNIST has 'train' and 'test'"),
    ("convert-no-images", ["data", "convert", "{tmp}/d_empty", "{tmp}/out4"], "holds no images"),
    ("convert-into-shards", ["data", "convert", "{tmp}/imgs", "{tmp}/d_unlabeled"], "already holds .parquet"),
    # -- raycl views ----------------------------------------------------------------------------
    ("views-out-folder-missing", ["views", "{demo}", "--out", "{tmp}/nope/views.png"],
     "/nope does not exist or is not writable"),
    ("views-out-is-folder", ["views", "{demo}", "--out", "{tmp}/imgs"], "is a directory"),
    ("views-samples-zero", ["views", "{demo}", "--samples", "0"], "--samples: expected an integer in 1..64, got 0"),
    ("views-logger-unknown", ["views", "{demo}", "run.loggers=[tensorbored]"], "run.loggers: unknown logger 'tensorbored'"),
    # -- the bank API ---------------------------------------------------------------------------
    ("bank-size-zero", ("bank", 0, 8), "MemoryBank size: expected an integer >= 1, got 0"),
    ("bank-dim-zero", ("bank", 10, 0), "MemoryBank dim"),
    ("bank-size-fraction", ("bank", 2.5, 8), "got 2.5"),
    ("bank-size-negative", ("bank", -3, 8), "got -3"),
    ("bank-momentum-zero", ("bank_momentum", 0.0), "bank momentum w must be in (0, 1]"),
    ("shard-rank-outside", ("shard", 3, 2), "Shard rank 3 is outside 0..1"),
    ("shard-world-zero", ("shard", 0, 0), "Shard world"),
    ("kmeans-zero-clusters", ("kmeans", 0), "num_clusters: expected an integer >= 1"),
    ("kmeans-more-clusters-than-rows", ("kmeans", 11), "num_clusters 11 > 10"),
    ("bank-fetch-negative", ("fetch", -1), "sample index -1 is outside"),
    ("bank-fetch-past-end", ("fetch", 10), "sample index 10 is outside"),
    ("kmeans-labels-negative", ("labels_of", -1), "sample index -1 is outside"),
    ("kmeans-step-past-end", ("kmeans_step", 10), "sample index 10 is outside"),
    ("kmeans-step-negative", ("kmeans_step", -2), "sample index -2 is outside"),
    # -- the Python API -------------------------------------------------------------------------
    ("api-train-dict-bad", ("train", {"data": {"batch_size": "x"}}), "data.batch_size: expected an integer"),
    ("api-train-edited-config", ("train_edited",), "optim.base_lr: must be >= 0"),
    ("api-train-not-config", ("train", "demo.yaml"), "expected a raycl Config or a dict"),
    ("api-train-unknown-section", ("train", {"trainer": {}}), "trainer: unknown section"),
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Every bad file the rows name, written once."""
    from PIL import Image

    from raycl.api import demo_config_path
    from raycl.config import from_dict, load_config
    from raycl.data.parquet import SCHEMA, encode_png
    from raycl.methods import build_method

    t = tmp_path_factory.mktemp("bad")
    (t / "list.yaml").write_text("- 1\n- 2\n")
    (t / "scalar.yaml").write_text("42\n")
    (t / "latin1.yaml").write_bytes("run:\n  name: caf\xe9\n".encode("latin-1"))
    (t / "malformed.yaml").write_text("run: {name: [unclosed\n")
    (t / "mixed_keys.yaml").write_text("1: {}\nfoo: {}\n")
    (t / "section_scalar.yaml").write_text("data: 5\n")
    (t / "empty.yaml").write_text("# nothing yet\n")

    cfg = load_config(demo_config_path(), ["model.width=8"])
    method = build_method(cfg, 1)
    good = {"config": cfg.to_dict(), "state_dict": method.state_dict()}
    for name in ("ck_truncated", "ck_garbage", "ck_evil", "ck_bare", "ck_width", "ck_badcfg", "ck_state_truncated"):
        (t / name).mkdir()
    torch.save(good, t / "ck_truncated" / "model.pt")
    data = (t / "ck_truncated" / "model.pt").read_bytes()
    (t / "ck_truncated" / "model.pt").write_bytes(data[: len(data) // 2])
    (t / "ck_garbage" / "model.pt").write_bytes(b"not a checkpoint at all" * 10)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {t / 'PWNED'}",))

    torch.save({"config": cfg.to_dict(), "state_dict": Evil()}, t / "ck_evil" / "model.pt")
    torch.save(method.state_dict(), t / "ck_bare" / "model.pt")
    wide = build_method(load_config(demo_config_path(), ["model.width=16"]), 1)
    torch.save({"config": cfg.to_dict(), "state_dict": wide.state_dict()}, t / "ck_width" / "model.pt")
    badcfg = cfg.to_dict()
    badcfg["optim"]["base_lr"] = -1
    torch.save({"config": badcfg, "state_dict": method.state_dict()}, t / "ck_badcfg" / "model.pt")
    (t / "ck_state_truncated" / "raycl_state.json").write_text('{"epoch": 1, "global_st')

    png = encode_png(np.zeros((1, 28, 28), np.uint8))

    def shard(name, table, filename="part-00000.parquet"):
        (t / name).mkdir()
        pq.write_table(table, t / name / filename)

    n = 8
    shard("d_int_image", pa.table({"index": np.arange(n), "image": np.arange(n), "label": np.zeros(n, int)}))
    shard("d_str_index", pa.table({"index": [str(i) for i in range(n)], "image": [png] * n,
                                   "label": np.zeros(n, int)}))

    def rows(index, labels):
        return pa.table({"index": pa.array(index, pa.int64()), "image": pa.array([png] * len(index), pa.binary()),
                         "label": pa.array(labels, pa.int64())}, schema=SCHEMA)

    shard("d_dup", rows([0, 1, 2, 3, 3, 5, 6, 7], [0] * n))
    shard("d_neg", rows([0, 1, 2, -4, 4, 5, 6, 7], [0] * n))
    shard("d_label_neg", rows(list(range(n)), [0, 1, -5, 0, 0, 0, 0, 0]))
    shard("d_label_huge", rows(list(range(n)), [0, 1, 10**10, 0, 0, 0, 0, 0]))
    shard("d_label_null", rows(list(range(n)), [0, 1, None, 0, 0, 0, 0, 0]))
    shard("d_label_1e9", rows(list(range(n)), [0, 1, 10**9, 0, 0, 0, 0, 0]))
    shard("d_index_zero", rows([0] * n, [i % 2 for i in range(n)]))
    shard("d_index_range", rows(list(range(-10, 54)), [i % 2 for i in range(64)]))
    shard("d_gone", rows(list(range(n)), [0] * n))
    for name in ("d_label_1e9", "d_label_neg", "d_index_zero", "d_index_range", "d_label_null", "d_gone"):
        # a run trained on these shards (its model.pt), evaluated later
        (t / f"ck_{name}").mkdir()
        run = from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "dataset": "parquet",
                                                    "path": str(t / name), "num_samples": None}})
        torch.save({"config": run.to_dict(), "state_dict": method.state_dict()}, t / f"ck_{name}" / "model.pt")
    import shutil

    shutil.rmtree(t / "d_gone")
    shard("d_unlabeled", rows(list(range(64)), [-1] * 64))
    (t / "ck_good").mkdir()
    torch.save(good, t / "ck_good" / "model.pt")
    (t / "ck_d_unlabeled").mkdir()
    run = from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "dataset": "parquet",
                                                "path": str(t / "d_unlabeled"), "num_samples": None}})
    torch.save({"config": run.to_dict(), "state_dict": method.state_dict()}, t / "ck_d_unlabeled" / "model.pt")
    shard("d_labeled", rows(list(range(64)), [i % 5 for i in range(64)]))
    shard("d_nolabel", pa.table({"index": np.arange(n), "image": [png] * n}))
    (t / "d_empty").mkdir()
    (t / "d_notparquet").mkdir()
    (t / "d_notparquet" / "part-00000.parquet").write_bytes(b"PAR1 but nothing else")

    (t / "imgs").mkdir()
    (t / "imgs_bad").mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(t / "imgs" / f"{i}.png")
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(t / "imgs_bad" / f"{i}.png")
    (t / "imgs_bad" / "3.png").write_text("this is a text file named .png")

    def sweep(name, raw):
        (t / name).write_text(yaml.safe_dump(raw))

    sweep("sw_uniform_int.yaml", sweep_file({"model.width": {"uniform": [8, 16]}}))
    sweep("sw_grid.yaml", sweep_file({"data.batch_size": {"grid": [64, 96]}, "distributed.workers": {"grid": [2, 3]}}))
    sweep("sw_metric.yaml", sweep_file({"optim.base_lr": {"grid": [0.1]}}, metric="knn_top5"))
    sweep("sw_list.yaml", {"sweep": [1, 2]})
    unl = sweep_file({"optim.base_lr": {"grid": [0.1]}})
    unl["data"] = {"dataset": "parquet", "path": str(t / "d_unlabeled"), "batch_size": 64}
    sweep("sw_unlabeled.yaml", unl)
    return t


def call(what, t):
    """Run one Python-API row."""
    from raycl import api
    from raycl.bank import MemoryBank, OnlineKMeans
    from raycl.bank.memory import Shard
    from raycl.config import load_config

    kind, *args = what
    if kind == "history":
        return api.history(args[0].format(tmp=t))
    if kind == "neighbours":
        return api.neighbours(args[0].format(tmp=t))
    if kind == "bank":
        return MemoryBank(*args)
    if kind == "bank_momentum":
        return MemoryBank(10, 4, momentum=args[0])
    if kind == "shard":
        return Shard(*args)
    bank = MemoryBank(10, 4)
    if kind == "kmeans":
        return OnlineKMeans(args[0], bank)
    if kind == "fetch":
        return bank.fetch(torch.tensor([0, args[0]]))
    if kind == "kmeans_step":
        with pytest.raises(IndexError):  # BankIndexError is an IndexError too, as every bank index error
            OnlineKMeans(2, bank).step(torch.tensor([0, args[0]]))
        return OnlineKMeans(2, bank).step(torch.tensor([0, args[0]]))
    if kind == "labels_of":
        return OnlineKMeans(2, bank).labels_of(torch.tensor([args[0]]))
    if kind == "train":
        return api.train(args[0])
    if kind == "train_edited":
        cfg = load_config(api.demo_config_path())  # frozen: a changed value is a new config, validated
        return api.train(cfg.with_overrides("optim.base_lr=-1.0"))
    raise AssertionError(kind)


@pytest.mark.parametrize("row_id, what, phrase", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_gets_one_clear_line(bad, capsys, row_id, what, phrase):
    import ray

    from raycl.api import demo_config_path
    from raycl.cli import main

    ray_was_up = ray.is_initialized()   # another module's session cluster may be running already
    if isinstance(what, list):
        argv = [a.format(tmp=bad, demo=demo_config_path()) for a in what]
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, err
        assert "Traceback" not in err
        assert len(lines) == 1 and lines[0].startswith("raycl: error: "), err
        assert phrase.format(tmp=bad) in lines[0], lines[0]
    else:
        with pytest.raises(RayclError) as e:
            call(what, bad)
        assert phrase.format(tmp=bad) in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert ray.is_initialized() == ray_was_up, "Ray was started for input that could be refused before"
    assert not (bad / "PWNED").exists(), "a checkpoint's pickle ran code"


def test_the_table_is_large_enough():
    assert len(ROWS) >= 60 and len({r[0] for r in ROWS}) == len(ROWS)
