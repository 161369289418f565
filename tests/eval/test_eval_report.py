"""What evaluation in one process prints: progress lines for long work (none for short work) and the
encoder against its floors."""
import time

from raycl.eval.report import Ticker, floors_table


def test_long_work_shows_progress_with_rate_and_eta_and_short_work_prints_nothing():
    lines = []
    tick = Ticker("encoder features of training rows", "rows", every_s=0.05, say=lines.append)
    for done in (1000, 2000, 3000, 4000):
        time.sleep(0.06)
        tick(done, 4000)
    assert len(lines) == 4
    assert lines[0].startswith("eval: encoder features of training rows 1,000/4,000 rows | ")
    assert " rows/s | ETA 0m00s" in lines[0] and lines[-1].split(" | ")[-1].startswith("done in ")
    quiet = []
    short = Ticker("linear probe", "epochs", every_s=60.0, say=quiet.append)
    for done in range(1, 31):
        short(done, 30)
    assert quiet == []


def test_the_floors_table_lists_the_encoder_and_each_floor_measured():
    result = {"knn_top1": 0.8095, "linear_probe_top1": 0.8613, "random_init_knn_top1": 0.7569,
              "random_init_linear_probe_top1": 0.7967, "pixels_knn_top1": 0.812}
    assert floors_table(result).splitlines() == [
        "              kNN top-1  linear probe",
        "encoder          0.8095        0.8613",
        "random init      0.7569        0.7967",
        "raw pixels       0.8120             -"]
    # a protocol the table has no title for (a plugin's) gets a column named from its metric
    assert floors_table({"knn_top1": 0.5, "toy_centroid_top1": 0.25}).splitlines()[0].split() == [
        "kNN", "top-1", "toy", "centroid", "top-1"]
    assert len(floors_table({"knn_top1": 0.5}).splitlines()) == 2   # no floors measured: no floor rows
    ranked = floors_table({**result, "effective_rank": 45.61, "pixels_effective_rank": 120.25}).splitlines()
    assert ranked[0].endswith("effective rank") and ranked[1].endswith("45.6") and ranked[2].endswith("-")
    assert ranked[3].endswith("120.2")   # one decimal: a count of directions, not an accuracy


def test_slow_units_show_their_rate_to_two_digits_not_as_zero():
    lines = []
    tick = Ticker("encoder logistic regression", "values of C", every_s=0.0, say=lines.append)
    tick.t0 -= 8.0                                # 2 values in 8 s
    tick(2, 12)
    assert "| 0.25 values of C/s | ETA 0m40s" in lines[0], lines[0]
