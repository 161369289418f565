"""``raycl bench quality``: every method for the same budget over several seeds, one table, two floors.

Each method runs the real path (``raycl train`` on Ray + DeepSpeed, then kNN and a linear probe on the
frozen encoder) from one base config (the built-in digits, or shards); the recipe
``quality/presets`` holds each row's method and the few keys small images need (bank sizes, queue
length, strong-view size). With a ``sweep:`` space (``tune``),
each method's values are first chosen by ``raycl sweep`` on a split of the training rows alone
(``data.validation``): the held-out rows the table reports are never seen while choosing. Two floors
close the table, measured per seed on the same rows by the same protocol: the encoder at random init,
and the raw pixels. With ``out``, every finished run, choice and floor is saved at once; a rerun with
the same arguments continues where the last one stopped.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

from raycl import api
from raycl.config import apply_overrides, from_dict, path_fields, read_yaml
from raycl.errors import ConfigError
from raycl.files import write_atomic
from raycl.methods import REGISTRY
from raycl.quality.summary import format_runs, orderings, summarise

PRESETS_RECIPE = "recipe:quality/presets"
PROTOCOLS = ("knn", "rank", "linear_probe")  # what the table reports, for each run and each floor


@functools.cache
def presets() -> dict[str, dict]:
    """The table's rows, in order: each row's name -> its config sections (``PRESETS_RECIPE``)."""
    return read_yaml(PRESETS_RECIPE, "quality presets")


PRINT = functools.partial(print, flush=True)  # a line per run, also when stdout is a file


def quality(
    base: dict,
    methods: list[str],
    seeds: list[int] | None = None,
    address: str | None = None,
    tune: dict | None = None,
    out: str | None = None,
    log: Callable[[str], Any] = PRINT,
    reuse: list[str] | None = None,
) -> dict:
    """Train and evaluate every method on every seed (after choosing its values on a validation
    split when ``tune``), then the floors; ``{"runs", "tuned", "floors", "summary"}``. A run or floor
    that a ``reuse`` results file measured from the same config and seed is copied, not retrained."""
    untuned = {name: method_config(base, name) for name in methods}  # an unknown method fails before training
    seeds = [0] if seeds is None else seeds
    state = load_state(out, {"base": base, "seeds": seeds, "tune": tune})
    save_state(state, out)  # before any training: a results file that cannot be written fails now, not after a run
    others = load_reusable(reuse or [], base)
    configs = dict(untuned)
    for name in methods:
        if tune is not None:
            if name not in state["tuned"]:
                state["tuned"][name], state["sweeps"][name] = tune_method(untuned[name], tune, name, address)
                save_state(state, out)
            configs[name] = with_chosen(untuned[name], state["tuned"][name])
            log(f"{name}: chosen on the validation split: {state['tuned'][name]}{trials_text(state, name)}")
    for seed in seeds:  # seed-major: a table stopped early has every method and both floors on its first seeds
        for name in methods:
            if not any(r["method"] == name and r["seed"] == seed for r in state["runs"]):
                earlier = reused_run(others, untuned[name], configs[name], name, seed)
                state["runs"].append(earlier or run_once(configs[name], name, seed, address))
                save_state(state, out)
                log(format_runs(state["runs"][-1:], header=len(state["runs"]) == 1))
        if str(seed) not in state["floors"] or "pixels_knn_preprocessing" not in state["floors"][str(seed)]:
            state["floors"][str(seed)] = seed_floors(state["floors"].get(str(seed)), others, base, seed)
            save_state(state, out)
            floors = state["floors"][str(seed)]
            log(f"floors of seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in floors.items() if is_number(v)))
    state["summary"] = summarise(state, methods, seeds)
    state["orderings"] = orderings(state["summary"])
    save_state(state, out)
    return state


def seed_floors(stored: dict | None, others: list[tuple[str, dict]], base: dict, seed: int) -> dict:
    """Both floors of one seed: another results file's copy, else measured. A stored pixel floor of
    one preprocessing only (no ``pixels_knn_preprocessing``) is weaker than the floor and is
    measured again; the random-init floor it came with stands."""
    if stored is None:
        copies = [o["floors"][str(seed)] for _, o in others if str(seed) in (o.get("floors") or {})]
        stored = copies[0] if copies else measure_floors(base, seed)
    if "pixels_knn_preprocessing" not in stored:
        stored = {k: v for k, v in stored.items() if not k.startswith("pixels_")} | measure_pixel_floor(base, seed)
    return stored


def is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def measure_floors(base: dict, seed: int) -> dict:
    return api.floors(from_dict(apply_overrides(base, [f"run.seed={seed}"])), PROTOCOLS)


def measure_pixel_floor(base: dict, seed: int) -> dict:
    """The raw-pixel floor alone, the best of its plain preprocessings (``pixels_*``)."""
    cfg = from_dict(apply_overrides(base, [f"run.seed={seed}"]))
    return {f"pixels_{k}": v for k, v in api.pixel_floor(cfg, PROTOCOLS).items()}


def with_chosen(raw: dict, chosen: dict) -> dict:
    """``raw`` with the values a sweep chose (``{"optim.base_lr": 0.03}``)."""
    return apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in chosen.items()])


def load_reusable(paths: list[str], base: dict) -> list[tuple[str, dict]]:
    """``--reuse`` results files, each measured from ``base`` (the floors depend on it and the seed alone)."""
    others = []
    for path in paths:
        saved = read_results(path, "--reuse")
        if portable(saved.get("base")) != portable(base):
            raise ConfigError(f"--reuse: {path!r} was measured from another config; runs of the same one only")
        others.append((os.path.basename(path), saved))
    return others


def reused_run(others, untuned: dict, config: dict, name: str, seed: int) -> dict | None:
    """``name``'s run on ``seed`` from a results file whose config for it is ``config``: training is
    reproducible from its seed (a rerun matched to the last digit), so it is the same run."""
    for path, other in others:
        if portable(with_chosen(untuned, (other.get("tuned") or {}).get(name, {}))) != portable(config):
            continue
        for run in other["runs"]:
            if run.get("method") == name and run.get("seed") == seed:
                return {**run, "reused_from": path}
    return None


def method_config(base: dict, name: str) -> dict:
    """The base config as row ``name`` trains it: the base's keys its method has, then its preset."""
    values = preset(name, base)  # first: an unknown name is one line
    return apply_overrides(for_method(base, presets()[name]["method"]["name"]), values)


def preset(name: str, base: dict) -> list[str]:
    """Row ``name``'s preset as overrides for ``base``'s data: ``{train_rows}`` (a memory bank's size)
    becomes the largest training sample index + 1, the bound ``check_data`` holds a per-sample store to."""
    if name not in presets():
        raise ConfigError(f"bench quality: no preset for method {name!r}; known: {', '.join(presets())}")
    values = [
        f"{section}.{key}={json.dumps(v)}" for section, keys in presets()[name].items() for key, v in keys.items()
    ]
    if not any("{train_rows}" in o for o in values):
        return values
    from raycl.data import build_sources, check_data

    cfg = from_dict(base)
    scan = check_data(cfg).get("train")  # Parquet: the index column's scan, images unread
    rows = scan["max_index"] + 1 if scan else len(build_sources(cfg)[0])  # the digits: indexed 0..N-1
    return [o.replace('"{train_rows}"', str(rows)) for o in values]


def run_once(raw: dict, name: str, seed: int, address: str | None) -> dict:
    """One training run and its evaluation on the held-out rows (the floors are measured once a seed)."""
    cfg = from_dict(apply_overrides(raw, [f"run.name=quality-{name}-s{seed}-{int(time.time())}", f"run.seed={seed}"]))
    t0 = time.perf_counter()
    metrics = api.train(cfg, address)
    ev = api.evaluate(metrics["checkpoint"], PROTOCOLS, with_floors=False)
    return {
        "method": name,
        "seed": seed,
        "knn_top1": round(ev["knn_top1"], 4),
        "linear_probe_top1": round(ev["linear_probe_top1"], 4),
        "effective_rank": round(ev["effective_rank"], 2),
        "images_per_s": round(metrics["images_per_s"], 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "checkpoint": metrics["checkpoint"],
    }


def trials_text(state: dict, name: str) -> str:
    trials = state["sweeps"].get(name) or []
    return "".join(f"; {t['config']} scored {t['score']:.4f}" for t in trials if t["score"] is not None)


def tune_method(raw: dict, tune: dict, name: str, address: str | None) -> tuple[dict, list[dict]]:
    """The values of ``tune``'s space with the best sweep metric for ``name``, the sweep trained on
    the training rows minus a validation share and scored on that share; and every trial's values
    and score (its best metric), so the table shows by how much the choice won."""
    from raycl.config import from_user
    from raycl.tune import parse_sweep, sweep_config

    base = apply_overrides(raw, ["data.validation=true", f"run.name=quality-tune-{name}"])
    from_user(base)
    spec = parse_sweep({"name": f"quality-tune-{name}", **tune}, base)
    result = sweep_config(base, spec, address)
    key, sign = "best_" + spec.metric, 1 if spec.mode == "max" else -1
    finished = [t for t in result["trials"] if t[key] is not None]
    trials = [{"config": t["config"], "score": t[key]} for t in result["trials"]]
    return max(finished, key=lambda t: sign * t[key])["config"], trials


def portable(raw: Any) -> Any:
    """A config's sections with each local path under the working directory written relative to it
    and each under the home folder with ``~``: a results file kept in a repository then continues in
    any clone of it, by any user (the data are the same files)."""
    if not isinstance(raw, dict):
        return raw
    out = json.loads(json.dumps(raw))  # a copy, as it reads back from JSON: tuples are lists
    cwd, home = os.getcwd(), os.path.expanduser("~")
    for section, key in path_fields(out.get("method")):
        node = out.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and os.path.isabs(value):
            for root, shown in ((cwd, "."), (home, "~")):
                if value == root or value.startswith(root.rstrip("/") + "/"):
                    node[key] = os.path.join(shown, os.path.relpath(value, root))
                    break
    return out


def read_results(path: str, flag: str) -> dict:
    try:
        with open(path) as fh:
            saved = json.load(fh)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{flag}: {path!r} is not a bench quality results file ({e})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("runs"), list):
        raise ConfigError(f"{flag}: {path!r} is not a bench quality results file (no 'runs' list)")
    saved["runs"] = [probe_named(r) for r in saved["runs"]]
    saved["floors"] = {seed: probe_named(f) for seed, f in (saved.get("floors") or {}).items()}
    return saved


def probe_named(figures: dict) -> dict:
    """A results file written before the frozen linear probe's figures were named for their protocol
    (``linear_top1`` -> ``linear_probe_top1``, and the floors' and preprocessings' keys alike)."""
    old = ("linear_top1", "linear_preprocessing")
    return {next((k.replace(o, "linear_probe" + o[6:]) for o in old if k.endswith(o)), k): v
            for k, v in figures.items()}  # fmt: skip


def load_state(out: str | None, args: dict) -> dict:
    """What a previous run with the same arguments saved in ``out``, or a fresh state."""
    args = json.loads(json.dumps({**args, "base": portable(args["base"])}))  # as it reads back: tuples are lists
    fresh = {**args, "tuned": {}, "sweeps": {}, "runs": [], "floors": {}}
    if out is None or not os.path.exists(out):
        return fresh
    saved = read_results(out, "--out")
    saved_args = {**{k: saved.get(k) for k in args}, "base": portable(saved.get("base"))}
    if saved_args != args:
        raise ConfigError(
            f"--out: {out!r} holds results of other arguments (config, seeds or sweep space); "
            "name another file to start afresh"
        )
    return {**fresh, **{k: saved[k] for k in ("tuned", "sweeps", "runs", "floors") if k in saved}}


def save_state(state: dict, out: str | None) -> None:
    if out is None:
        return
    try:
        write_atomic(out, json.dumps(state, indent=1))
    except OSError as e:
        raise ConfigError(f"--out: cannot write the results file {out!r} ({e.strerror})") from None


def for_method(base: dict, name: str) -> dict:
    """``base`` with ``method.name`` set to ``name``, keeping only the base's method keys that
    method has (the demo's temperature, say; never another method's keys)."""

    own = REGISTRY[name].Config.model_fields
    method = {k: v for k, v in (base.get("method") or {}).items() if k in own and k != "name"}
    return {**base, "method": {"name": name, **method}}
