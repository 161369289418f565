"""What a person sees while a run trains: raycl's own lines, one progress display, real warnings.

Ray forwards every worker's and controller's stdout/stderr to the driver, where one handler prints
it. While a run trains, raycl puts its own handler in that place: progress events from rank 0
(``PROGRESS`` + JSON) drive one display (a bar on a terminal, a plain line per event elsewhere),
``[raycl]`` lines print as they are, Ray's and DeepSpeed's routine messages are dropped, and
anything else (a real warning, an error, a user's print) is shown with Ray's ``(actor pid=...)``
prefix. ``RAYCL_VERBOSE=1`` (``raycl --verbose``) drops nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from typing import IO, Any

from raycl.errors import RayclError
from raycl.progress import fmt_duration
from raycl.train import ray_logs

PROGRESS = "[raycl:progress] "
FAILED = "[raycl:failed] "  # a worker stopping on a RayclError: JSON {"error", "message"}; what follows is its echo

# Routine messages of Ray, Ray Train, DeepSpeed and torch, each seen in a plain `raycl demo` on CPU.
NOISE = [
    r"^Requesting resources: ",
    r"^Attempting to start training worker group",
    r"^Started training worker group of size",
    r"^- \(ip=\S+, pid=\d+\) world_rank=",
    r"^Setting up process group for: ",
    r"has constructor arguments in the object store and max_restarts > 0",  # Ray's PreemptionWatcher
    r"Setting accelerator to CPU",
    r"No CUDA runtime is found",
    r"deepspeed_shm_comm_op built successfully",
    r"ZeRO with an untested optimizer",  # LARS: raycl tests it under ZeRO (tests/optim/test_lars_zero.py)
    r"^Reporting training result \d+: TrainingReport\(",
    r"^Using network interface",
    r"Token authentication is enabled for this Ray cluster",
    r" INFO mlflow\.store\.db\.utils: ",  # MLflow creating its local SQLite tables
    r"^Detected that the Ray Train controller actor \(\w+\) is dead\. Cleaning up placement group",  # a run ended
    # Ray Train's 4-line notice on resuming a run; raycl says "resuming" itself
    r"^A run snapshot was found in storage folder at",
    r"^This snapshot contains a list of checkpoints reported via",
    r"^If you meant to start a brand new training job without any",
    r"^please configure a new, unique `RunConfig\(name\)` or delete the",
]
_NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE))
# The first line of the dump Ray's C++ core prints when a worker process aborts (a signal, or its
# training thread ended from outside: how a sweep trial that ASHA stops loses its workers mid-step).
CRASH_DUMP = re.compile(r"logging\.cc:\d+: (?:Stack trace:|\*\*\* SIG[A-Z]+ received)")


def verbose() -> bool:
    return os.environ.get("RAYCL_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def terminal_width(stream: IO[str]) -> int:
    """Columns of the terminal ``stream`` writes to; 0 when it is not one (a pipe, a file, CI) or one
    without a size (a pty nobody sized draws no bar: plain lines then)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (OSError, ValueError, AttributeError):
        return 0


def is_noise(line: str) -> bool:
    return bool(_NOISE.search(line))


class Console:
    """Renders forwarded log batches (Ray's dicts: pid, lines, is_err, actor_name, task_name)."""

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        tty: bool | None = None,
        show_all: bool = False,
        progress: bool = True,
        failure_log: str | None = None,
        failure_scope: str = "run",
    ):
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tty = terminal_width(self.err) > 0 if tty is None else tty
        self.show_all, self.show_progress = show_all, progress
        self.dropped = 0
        # Once a worker has said it stops on a raycl error, every other line (its traceback as Ray
        # Train logs it, the controller's failure report) repeats it: kept in failure_log, not shown.
        self.failure: dict | None = None
        self.failure_log, self.failure_lines = failure_log, 0
        self.failure_scope, self.failed_pids = failure_scope, set[object]()
        self.dumping = set[object]()  # workers whose crash dump is going to failure_log
        self.bar: Any = None
        self.last: dict | None = None
        self._lock = threading.Lock()

    # -- Ray's side --------------------------------------------------------------------------------
    def handle(self, data: dict) -> None:
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who + ' ' if who else ''}pid={data.get('pid')}) "
        lines = data.get("lines", [])
        if data.get("pid") == "autoscaler":  # its status dumps every 5 s; Ray itself shows only events
            lines, prefix = ray_logs.autoscaler_events(lines), "(autoscaler) "
        with self._lock:
            for line in lines:
                self._line(line, prefix, bool(data.get("is_err")), (who, data.get("pid")))

    def _line(self, line: str, prefix: str, is_err: bool, source: tuple = ("", None)) -> None:
        if line.startswith(PROGRESS):
            try:
                event = json.loads(line[len(PROGRESS) :])
            except ValueError:
                event = None
            if isinstance(event, dict):
                self.progress(event)
                return
        if line.startswith(FAILED):
            self.failure = self.failure or {"message": line[len(FAILED) :]}
            self.failed_pids.add(source[1])
            return
        if source[1] not in self.dumping and not self.show_all and CRASH_DUMP.search(line):
            self.dumping.add(source[1])
            where = f"; its dump: {self.failure_log}" if self.failure_log else ""
            self.write(f"{prefix}[raycl] this process ended mid-step (a stopped sweep trial ends so){where}", self.err)
        if (self.hiding(source) or source[1] in self.dumping) and not line.startswith("[raycl]"):
            self.keep_failure_line(prefix + line)
            return
        if line.startswith("[raycl]"):
            self.write(line)
        elif self.show_all or not is_noise(line):
            self.write(prefix + line, self.err if is_err else self.out)
        else:
            self.dropped += 1

    def hiding(self, source: tuple) -> bool:
        """Whether a line from ``source`` (actor name, pid) echoes a raycl error already announced: in a
        run, every line after it; in a sweep (``failure_scope`` "process"), where other trials go
        on, the lines of the workers that announced one and of Ray Train controllers (which report
        their group's failure)."""
        if self.failure is None or self.show_all:
            return False
        return self.failure_scope == "run" or source[1] in self.failed_pids or source[0] == "TrainController"

    def keep_failure_line(self, line: str) -> None:
        self.failure_lines += 1
        if self.failure_log is None:
            return
        try:
            os.makedirs(os.path.dirname(self.failure_log) or ".", exist_ok=True)
            with open(self.failure_log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            self.failure_log = None  # an unwritable log folder must not hide the error itself

    # -- the display ---------------------------------------------------------------------------------
    def write(self, text: str, stream: IO[str] | None = None) -> None:
        stream = stream or self.out
        if self.bar is not None:
            self.bar.clear()
        print(text, file=stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def progress(self, e: dict) -> None:
        """``e``: epoch, epochs, step, steps_per_epoch, global_step, total_steps, loss, lr,
        images_per_s, eta_s (rank 0, every run.log_every steps)."""
        self.last = e
        if not self.show_progress:
            return
        text = (
            f"epoch {e['epoch']}/{e['epochs']} step {e['step']}/{e['steps_per_epoch']} | loss {e['loss']:.4f} | "
            f"lr {e['lr']:.4g} | {e['images_per_s']:.0f} images/s | ETA {fmt_duration(e['eta_s'])}"
        )
        if not self.tty:
            print("[raycl] " + text, file=self.out, flush=True)
            return
        if self.bar is None:
            from tqdm import tqdm  # a bar only on a terminal

            self.bar = tqdm(
                total=e["total_steps"], file=self.err, dynamic_ncols=True, leave=False, unit="step",
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]",
            )  # fmt: skip
        self.bar.set_description_str(text, refresh=False)
        self.bar.n = e["global_step"]
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def attached(progress: bool = True, failure_log: str | None = None, failure_scope: str = "run"):
    """Route forwarded worker output through a Console while the block runs (then Ray's own printing
    again). Without Ray's handler in place (``ray.init(log_to_driver=False)``) nothing changes."""
    console = Console(show_all=verbose(), progress=progress, failure_log=failure_log, failure_scope=failure_scope)
    replaced = ray_logs.replace_printer(console.handle)
    try:
        yield console
    finally:
        if replaced is not None:
            ray_logs.replace_printer(replaced)
        console.close()


def drop_forwarded_noise() -> None:
    """Between runs (a notebook plotting, a sweep's table printed) Ray's own printer shows forwarded
    lines, e.g. Ray Train's placement-group cleaner a few seconds after a run ends. Once Ray is up,
    its printer is wrapped to drop the same routine lines the console drops (not with --verbose)."""
    ray_print = ray_logs.printer()
    if verbose() or ray_print is None or getattr(ray_print, "drops_noise", False):
        return

    def print_without_noise(data: dict) -> None:
        lines = [line for line in data.get("lines", []) if not is_noise(line)]
        if lines:
            ray_print({**data, "lines": lines})

    print_without_noise.drops_noise = True  # type: ignore[attr-defined]
    ray_logs.replace_printer(print_without_noise)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_noise(record.getMessage())


_DRIVER_FILTER = _DropNoise()


def quiet_driver_logs() -> None:
    """The driver's own Ray logger that warns at every ray.init that token auth is on (kept with
    RAYCL_VERBOSE=1). A logger's filter sees only its own records, so it goes on that logger; once."""
    if verbose():
        return
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_DRIVER_FILTER)


class _DropRayclTrialErrors(logging.Filter):
    """Tune logs a failed trial's whole traceback; for a raycl error the sweep's table and its final
    line already say it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:

        return not (record.exc_info and isinstance(record.exc_info[1], RayclError))


TUNE_CONTROLLER = "ray.tune.execution.tune_controller"  # the logger of "Trial task failed for trial ..."


@contextlib.contextmanager
def quiet_trial_errors():
    if verbose():
        yield
        return
    log, trial_filter = logging.getLogger(TUNE_CONTROLLER), _DropRayclTrialErrors()
    log.addFilter(trial_filter)
    try:
        yield
    finally:
        log.removeFilter(trial_filter)


def summary(history: list[dict], extra: dict | None = None) -> str:
    """A small table: one row per epoch (loss, the held-out figure: kNN top-1, or the top-1 of a
    classifier under evaluation, images/s, time), then ``extra`` lines."""
    scored = [k for m in history for k in m if k.endswith("_top1") and "/" not in k and k != "knn_top1"]
    key = scored[0] if scored else "knn_top1"
    w = max(11, len(key))
    rows = [f"{'epoch':>5} {'loss':>8} {key:>{w}} {'images/s':>9} {'time':>8}"]
    for m in history:
        knn = f"{m[key]:.4f}" if m.get(key) is not None else "-"
        t = fmt_duration(m.get("epoch_time_s", 0.0))
        rows.append(f"{m['epoch']:>5} {m['loss']:>8.4f} {knn:>{w}} {m.get('images_per_s', 0.0):>9.0f} {t:>8}")
    for k, v in (extra or {}).items():
        rows.append(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return "\n".join(rows)
