"""Loggers write curves that their own readers read back, and the console keeps raycl's lines."""
import io
import json

import pytest
from curves import tensorboard_scalars, wandb_history, wandb_run_ids

from raycl.config import load_config
from raycl.errors import ConfigError
from raycl.train import loggers as lg
from raycl.train.console import PROGRESS, Console, summary

EPOCHS = [{"loss": 5.0 - s, "knn_top1": 0.5 + 0.01 * s, "data/wait_s": 0.1 * s, "note": "text"} for s in range(4)]


def write(names, d, steps, resumed=None):
    log = lg.Loggers(names, str(d), "run-a", {"run": {"name": "run-a", "epochs": 4}}, resumed)
    for s in steps:
        log.log(EPOCHS[s - 1], s)
    log.close()


def test_every_logger_reads_back_what_was_logged(tmp_path):
    write(["tensorboard", "mlflow", "wandb"], tmp_path, [1, 2, 3, 4])
    want = {k: [(s, EPOCHS[s - 1][k]) for s in range(1, 5)] for k in ("loss", "knn_top1", "data/wait_s")}
    tb = tensorboard_scalars(str(tmp_path / "tensorboard"))
    assert set(tb) == set(want)  # the string field is left out
    for k, v in want.items():
        assert [s for s, _ in tb[k]] == [s for s, _ in v] and [x for _, x in tb[k]] == pytest.approx([x for _, x in v])
    assert wandb_history(str(tmp_path)) == {k: v for k, v in want.items()}
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = (tmp_path / "mlflow_run_id").read_text()
    for k, v in want.items():
        assert sorted((m.step, m.value) for m in c.get_metric_history(run_id, k)) == v
    run = c.get_run(run_id)
    assert run.info.run_name == "run-a" and run.data.params["run.epochs"] == "4" and run.info.status == "FINISHED"


def test_a_resumed_run_continues_the_same_curves(tmp_path):
    """Steps 1-3 logged, the run dies, resumes from its checkpoint at step 2: step 3 is logged again
    by the resumed run and each logger holds one run with steps 1..4 once."""
    names = ["tensorboard", "mlflow", "wandb"]
    write(names, tmp_path, [1, 2, 3])
    write(names, tmp_path, [3, 4], resumed=2)
    tb = tensorboard_scalars(str(tmp_path / "tensorboard"))
    assert [s for s, _ in tb["loss"]] == [1, 2, 3, 4]
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert len(c.search_runs([c.get_experiment_by_name("raycl").experiment_id])) == 1
    steps = sorted({m.step for m in c.get_metric_history((tmp_path / "mlflow_run_id").read_text(), "loss")})
    assert steps == [1, 2, 3, 4]
    assert len(wandb_run_ids(str(tmp_path))) == 1


def test_unknown_or_missing_loggers_are_one_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"run.loggers: unknown logger 'neptune'; available: tensorboard, mlflow"):
        load_config(None, ["run.loggers=[tensorboard, neptune]"])
    assert load_config(None, ["run.loggers=[]"]).run.loggers == []
    monkeypatch.setitem(lg.PACKAGES, "wandb", "wandb_is_not_installed_here")
    with pytest.raises(ConfigError, match=r"run.loggers: wandb needs the 'wandb_is_not_installed_here' package"):
        lg.check(["tensorboard", "wandb"])


def batch(lines, is_err=False, actor="RayTrainWorker", pid=7):
    return {"pid": pid, "lines": lines, "is_err": is_err, "actor_name": actor}


NOISY = [
    "Requesting resources: {'CPU': 1.0} * 2",
    "Attempting to start training worker group of size 2 with the following resources: [{'CPU': 1.0}] * 2",
    "Started training worker group of size 2: ",
    "- (ip=192.0.2.2, pid=32513) world_rank=0, local_rank=0, node_rank=0",
    "Setting up process group for: env:// [rank=0, world_size=2]",
    "[2026-11-24 11:44:52,610 E 32400 32428] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: "
    "'49' has constructor arguments in the object store and max_restarts > 0",
    "[2026-11-24 11:44:54,988] [WARNING] [real_accelerator.py:213:get_accelerator] Setting accelerator to CPU. If you "
    "have GPU or other accelerator, we were unable to detect it.",
    "[rank1]:W1124 11:44:56.050000 32542 torch/utils/cpp_extension.py:183] No CUDA runtime is found, using CUDA_HOME=",
    "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully",
    "[2026-11-24 11:44:56,953] [WARNING] [engine.py:2304:_do_optimizer_sanity_check] **** You are using ZeRO with an "
    "untested optimizer, proceed with caution *****",
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'epoch': 1})",
]


def test_console_drops_routine_lines_and_keeps_raycl_lines_and_real_warnings():
    out, err = io.StringIO(), io.StringIO()
    con = Console(out, err, tty=False)
    real = "UserWarning: the learning rate is NaN"
    con.handle(batch(NOISY + ["[raycl] epoch 1/2 done | loss 6.1"]))
    con.handle(batch([real], is_err=True))
    ev = {"epoch": 1, "epochs": 2, "step": 4, "steps_per_epoch": 8, "global_step": 4, "total_steps": 16,
          "loss": 6.04, "lr": 0.2, "images_per_s": 368.0, "eta_s": 59.0}  # fmt: skip
    con.handle(batch([PROGRESS + json.dumps(ev)]))
    lines = out.getvalue().splitlines()
    assert lines == ["[raycl] epoch 1/2 done | loss 6.1",
                     "[raycl] epoch 1/2 step 4/8 | loss 6.0400 | lr 0.2 | 368 images/s | ETA 0m59s"]  # fmt: skip
    assert err.getvalue() == f"(RayTrainWorker pid=7) {real}\n"
    assert con.dropped == len(NOISY)
    shown = Console(io.StringIO(), io.StringIO(), tty=False, show_all=True)  # RAYCL_VERBOSE=1
    shown.handle(batch(NOISY))
    assert len(shown.out.getvalue().splitlines()) == len(NOISY) and shown.dropped == 0


def test_console_on_a_terminal_draws_one_bar_and_prints_lines_above_it():
    out, err = io.StringIO(), io.StringIO()
    con = Console(out, err, tty=True)
    for s in (2, 4):
        ev = {"epoch": 1, "epochs": 1, "step": s, "steps_per_epoch": 4, "global_step": s, "total_steps": 4,
              "loss": 1.0 / s, "lr": 0.1, "images_per_s": 100.0, "eta_s": 4 - s}  # fmt: skip
        con.handle(batch([PROGRESS + json.dumps(ev)]))
    con.handle(batch(["[raycl] epoch 1/1 done | loss 0.25"]))
    con.close()
    assert out.getvalue() == "[raycl] epoch 1/1 done | loss 0.25\n"  # progress never on stdout
    bar = err.getvalue()
    assert "\r" in bar and "step 4/4 | loss 0.2500" in bar and "4/4" in bar and "\n" not in bar.replace("\r", "")[-1:]


def test_summary_table_lists_every_epoch():
    hist = [{"epoch": 1, "loss": 6.1254, "knn_top1": 0.694, "images_per_s": 447.0, "epoch_time_s": 9.2},
            {"epoch": 2, "loss": 5.6121, "images_per_s": 549.0, "epoch_time_s": 7.0}]  # fmt: skip
    rows = summary(hist, {"linear_eval_top1": 0.908}).splitlines()
    assert rows[0].split() == ["epoch", "loss", "knn_top1", "images/s", "time"]
    assert rows[1].split() == ["1", "6.1254", "0.6940", "447", "0m09s"]
    assert rows[2].split() == ["2", "5.6121", "-", "549", "0m07s"] and rows[3] == "linear_eval_top1: 0.9080"
    # a linear evaluation's epochs report its classifier's held-out top-1 instead of the kNN monitor
    linear = summary([{"epoch": 1, "loss": 0.64, "finetune_top1": 0.8231, "images_per_s": 3789.0, "epoch_time_s": 16,
                       "method/train_top1": 0.9}])
    assert linear.splitlines()[0].split()[2] == "finetune_top1" and linear.splitlines()[1].split()[2] == "0.8231"


def test_a_bar_only_on_a_terminal_that_has_a_width():
    import fcntl
    import os
    import struct
    import termios

    from raycl.train.console import terminal_width

    assert terminal_width(io.StringIO()) == 0 and Console(io.StringIO(), io.StringIO()).tty is False
    main, side = os.openpty()
    try:
        with open(side, "w", closefd=False) as tty:
            assert terminal_width(tty) == 0  # a pty nobody sized: tqdm would draw nothing there
            fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            assert terminal_width(tty) == 120 and Console(io.StringIO(), tty).tty is True
    finally:
        os.close(main)
        os.close(side)


@pytest.mark.parametrize("line", ["RuntimeError: CUDA error: an illegal memory access was encountered",
                                  "ValueError: loss is nan at step 12", "Traceback (most recent call last):",
                                  "torch.distributed.DistBackendError: NCCL Error 3: internal error"])
def test_a_real_error_line_from_a_worker_reaches_the_console(line):
    out, err = io.StringIO(), io.StringIO()
    con = Console(out, err, tty=False)
    con.handle(batch(NOISY + [line], is_err=True))
    assert err.getvalue() == f"(RayTrainWorker pid=7) {line}\n" and con.dropped == len(NOISY)


def test_after_a_worker_stops_on_a_raycl_error_its_echoes_go_to_the_failure_log(tmp_path):
    """The worker announces the error; Ray Train's traceback of it and the controller's report that
    follow are kept in the failure log, not shown; raycl's own lines still show."""
    from raycl.train.console import FAILED

    out, err = io.StringIO(), io.StringIO()
    log = tmp_path / "run" / "failure.log"
    con = Console(out, err, tty=False, failure_log=str(log))
    con.handle(batch(["[raycl] epoch 1/2 done | loss 6.1"]))
    con.handle(batch([FAILED + json.dumps({"error": "DataError", "message": "corrupt image bytes at row 25"})],
                     is_err=True))
    echo = ["Error in training function:", "Traceback (most recent call last):", "raycl.errors.DataError: corrupt"]
    con.handle(batch(echo, is_err=True))
    con.handle(batch(["[FailurePolicy] RAISE", "ray.train.WorkerGroupError: Training failed"], is_err=True,
                     actor="TrainController", pid=9))
    con.handle(batch(["[raycl] a line of raycl's own"]))
    assert out.getvalue().splitlines() == ["[raycl] epoch 1/2 done | loss 6.1", "[raycl] a line of raycl's own"]
    assert err.getvalue() == "" and con.failure_lines == 5
    assert log.read_text().splitlines() == [f"(RayTrainWorker pid=7) {e}" for e in echo] + [
        "(TrainController pid=9) [FailurePolicy] RAISE", "(TrainController pid=9) ray.train.WorkerGroupError: Training failed"]
    shown = Console(io.StringIO(), io.StringIO(), tty=False, show_all=True)  # --verbose: everything shows
    shown.handle(batch([FAILED + "{}"] + echo, is_err=True))
    assert shown.err.getvalue().splitlines() == [f"(RayTrainWorker pid=7) {e}" for e in echo]


def test_in_a_sweep_only_the_failed_workers_and_the_controllers_echoes_are_kept_out_of_sight():
    from raycl.train.console import FAILED

    out, err = io.StringIO(), io.StringIO()
    con = Console(out, err, tty=False, failure_scope="process")
    con.handle(batch([FAILED + "{}", "Traceback (most recent call last):"], is_err=True, pid=7))
    con.handle(batch(["[FailurePolicy] RAISE"], is_err=True, actor="TrainController", pid=9))
    con.handle(batch(["UserWarning: another trial goes on"], is_err=True, pid=8))
    assert err.getvalue() == "(RayTrainWorker pid=8) UserWarning: another trial goes on\n"
    assert con.failure_lines == 2


def test_a_workers_crash_dump_is_one_line_and_the_dump_goes_to_the_log(tmp_path):
    """A sweep trial that ASHA stops loses its workers mid-step; Ray's C++ core prints a ~100-line
    dump for each. One line says so (naming the file); the dump itself is kept there."""
    out, err = io.StringIO(), io.StringIO()
    log = tmp_path / "worker_output.log"
    con = Console(out, err, tty=False, failure_log=str(log), failure_scope="process")
    dump = ["[2026-11-30 18:11:27,427 E 29661 29840] logging.cc:125: Stack trace: ",
            " /x/ray/_raylet.so(+0x1812b9a) [0x7f5339612b9a] ray::operator<<()", "Fatal Python error: Aborted"]
    con.handle(batch(dump, is_err=True, pid=11))
    con.handle(batch(["RuntimeError: another worker's real error"], is_err=True, pid=12))
    assert err.getvalue().splitlines() == [
        f"(RayTrainWorker pid=11) [raycl] this process ended mid-step (a stopped sweep trial ends so); its dump: {log}",
        "(RayTrainWorker pid=12) RuntimeError: another worker's real error"]
    assert log.read_text().splitlines() == [f"(RayTrainWorker pid=11) {d}" for d in dump]


def test_rays_private_log_forwarding_is_where_raycl_expects_it():
    """raycl replaces Ray's printer of forwarded worker output through one adapter
    (raycl/train/ray_logs.py); a Ray upgrade that moves it fails here, by name."""
    from raycl.train import ray_logs

    assert ray_logs.problems() == []


def test_between_runs_rays_own_printer_drops_the_routine_lines():
    """Ray's printer shows forwarded lines while no run is attached; raycl wraps it to drop the
    routine ones (a placement-group cleaner's notice seconds after a run ended) and keep the rest."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from raycl.train import ray_logs
    from raycl.train.console import drop_forwarded_noise

    printed = []
    saved = ray_logs.printer()
    if saved is None:
        dispatcher.add_handler(ray_logs.PRINTER, print)
    ray_logs.replace_printer(lambda data: printed.append(data["lines"]))
    try:
        drop_forwarded_noise()
        drop_forwarded_noise()   # once: a second call does not wrap the wrapper
        cleaner = ("Detected that the Ray Train controller actor (1e557b167fd1529330a82cca01000000) is dead. "
                   "Cleaning up placement group = [PlacementGroupID(9c68)] created by this run.")
        dispatcher.emit({"pid": 5, "lines": [cleaner], "is_err": True, "actor_name": "PlacementGroupCleaner"})
        dispatcher.emit({"pid": 6, "lines": [cleaner, "a user's print"], "is_err": False})
        assert printed == [["a user's print"]]
    finally:
        if saved is None:
            dispatcher.remove_handler(ray_logs.PRINTER)
        else:
            ray_logs.replace_printer(saved)


def test_raycl_lines_go_through_the_raycl_logger_once_to_stderr_and_can_be_silenced(capsys):
    import logging

    from raycl.log import get

    caught = []

    class Catch(logging.Handler):
        def emit(self, record):
            caught.append(record.getMessage())

    root_handler = Catch()
    logging.getLogger().addHandler(root_handler)   # a notebook's or an application's own logging
    try:
        log = get("raycl.some_module")
        log.info("a note")
        log.warning("a warning")
        captured = capsys.readouterr()
        assert captured.err == "[raycl] a note\n[raycl] a warning\n" and captured.out == ""
        assert caught == []                      # not printed a second time through the root logger
        logging.getLogger("raycl").setLevel(logging.WARNING)
        log.info("hidden")
        log.warning("still shown")
        assert capsys.readouterr().err == "[raycl] still shown\n"
    finally:
        logging.getLogger("raycl").setLevel(logging.INFO)
        logging.getLogger().removeHandler(root_handler)
