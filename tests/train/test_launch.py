"""raycl.train.launch: every Ray Train run raycl starts is built in one place."""
from tiny import tiny_config


def test_a_run_and_a_sweep_trial_launch_with_the_same_fault_tolerance_and_workers(tmp_path):
    """A sweep's trial is its own run of the swept config (raycl.tune._trial calls for_run as
    raycl.train.trainer does): restarts, checkpoints kept, the elastic range and the storage all come
    from the config, and the workers receive the validated Config object itself."""
    from ray.train import UserCallback

    from raycl.train import launch
    from raycl.train.worker import train_loop

    class Reports(UserCallback):  # a trial's TuneReportCallback needs a Tune session to be built
        pass

    cfg = tiny_config(tmp_path, "run.max_failures=3", "run.keep_checkpoints=4", "distributed.workers=[1, 2]",
                      "distributed.resize_check_s=7", "run.name=swept")
    plain = launch.trainer(launch.for_run(cfg, train_loop))
    trial = launch.trainer(launch.for_run(cfg, train_loop, name="trial-1", callbacks=[Reports()]))
    for t in (plain, trial):
        assert t.run_config.failure_config.max_failures == 3
        assert t.run_config.checkpoint_config.num_to_keep == 4
        assert t.scaling_config.num_workers == (1, 2) and t.scaling_config.elastic_resize_monitor_interval_s == 7
        assert t.run_config.storage_path == str(tmp_path)
        assert t.train_loop_config["config"] is cfg
    assert (plain.run_config.name, trial.run_config.name) == ("swept", "trial-1")
    assert [type(c).__name__ for c in trial.run_config.callbacks] == ["Reports"]
