"""``python -m course_utils bench``: its report, its checks, its kernels. No timing is asserted
(timings belong to the command, never to the tests)."""

from __future__ import annotations

import importlib
import json
import math
import re
import statistics

import nbformat
import pytest
import torch

import course_utils
import course_utils.checks
from course_utils.checks.core import QualityCheck
from course_utils.metrics import BENCH_VARIABLE
from course_utils.tools import cli
from course_utils.tools.bench import budgets, calibrate, command, micro, notebooks, report
from course_utils.tools.bench.calibrate import Calibration
from course_utils.tools.bench.results import Metric, MicroResult, NotebookRun, Report
from tests.notebook_code import ROOT

MACHINE = {"device": "cpu", "gpu": None, "cpus": 2, "cpu_model": "Test CPU", "torch_threads": 2,
           "torch": "2.x", "python": "3.x", "platform": "Linux", "date": "2026-01-01 00:00 UTC"}


def good_run(device: str = "cpu") -> Report:
    """A run within every budget and threshold (fake figures)."""
    return Report(
        machine={**MACHINE, "device": device, "gpu": "Test GPU" if device == "cuda" else None},
        notebooks=[
            NotebookRun("00_welcome", seconds=20.0, peak_mib=500.0, device=device),
            NotebookRun("01_convolution_pooling", seconds=100.0, peak_mib=900.0, device=device,
                        metrics=[Metric("SmallCNN held-out accuracy", 0.97, "%"),
                                 Metric("SmallCNN held-out accuracy", 0.96, "%"),
                                 Metric("loss", 0.05)]),
        ],
        micro=[MicroResult("conv2d", "conv2d vs F.conv2d, forward", "x (64, 3, 32, 32)",
                           ours_ms=2.0, torch_ms=1.0, ratio=2.0)],
    )


# --- the report ---------------------------------------------------------------------------


def test_the_markdown_names_the_machine_and_has_a_row_per_notebook_figure_and_ratio():
    run = good_run()
    text = report.markdown(run, budgets.check(run))
    assert "## Course benchmark: cpu" in text
    assert "2 CPU cores (Test CPU)" in text and "torch 2.x" in text
    assert "| 00_welcome | 20.0 s | ≤ 60 s | 500 MiB | cpu |" in text
    assert "| 01_convolution_pooling | 100.0 s | ≤ 180 s | 900 MiB | cpu |" in text
    assert "| **total** | **120.0 s** | ≤ 900 s |" in text
    assert ("| 01_convolution_pooling | SmallCNN held-out accuracy | 97.0 % | ≥ 95.0 % |"
            in text)
    assert "| 01_convolution_pooling | loss | 0.05 |  |" in text
    assert ("| conv2d vs F.conv2d, forward | x (64, 3, 32, 32) | 2 ms | 1 ms | 2.00× | ≤ 5× |"
            in text)
    assert "**No problems:**" in text
    for block in text.split("\n\n"):  # every row of a table has as many cells as its header
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) <= 1, block


def test_the_markdown_shows_the_gpu_and_its_memory_on_cuda():
    run = good_run("cuda")
    run.notebooks[0].gpu_peak_mib = 123.0
    text = report.markdown(run, [])
    assert "## Course benchmark: cuda (Test GPU)" in text
    assert "| 00_welcome | 20.0 s |  | 500 MiB | 123 MiB | cuda |" in text
    assert "| **total** | **120.0 s** | ≤ 120 s |" in text


def test_the_json_holds_the_machine_the_runs_and_the_problems_without_nan():
    run = good_run()
    run.notebooks[0].peak_mib = math.nan
    data = json.loads(json.dumps(run.to_json(["a problem"]), allow_nan=False))
    assert data["machine"] == MACHINE
    assert data["total_seconds"] == 120.0
    assert data["problems"] == ["a problem"]
    first = data["notebooks"][0]
    assert first["name"] == "00_welcome" and first["peak_mib"] is None
    assert data["notebooks"][1]["metrics"][0] == {"name": "SmallCNN held-out accuracy",
                                                  "value": 0.97, "unit": "%"}
    assert data["micro"][0]["ratio"] == 2.0


# --- the checks (a pure function of a report) ---------------------------------------------


def test_a_run_within_budget_has_no_problems():
    assert budgets.check(good_run()) == []
    assert budgets.check(good_run("cuda")) == []


def test_a_figure_below_its_threshold_is_named_with_its_notebook():
    run = good_run()
    run.notebooks[1].metrics[1].value = 0.94  # the hidden test's figure
    assert budgets.check(run) == ["01_convolution_pooling: 'SmallCNN held-out accuracy' is "
                                  "94.0 %, below its threshold of 95.0 %"]


@pytest.mark.parametrize("value", [math.nan, -1.0])
def test_a_figure_that_is_not_a_number_or_negative_fails(value):
    run = good_run()
    run.notebooks[1].metrics[0].value = value
    assert len(budgets.check(run)) == 1


def test_a_figure_never_reported_is_a_problem():
    run = good_run()
    run.notebooks[1].metrics = []
    assert budgets.check(run) == ["01_convolution_pooling: the figure 'SmallCNN held-out "
                                  "accuracy' was not reported"]


def test_a_notebook_over_its_time_budget_is_named():
    run = good_run()
    run.notebooks[0].seconds = 61.0  # 00_welcome: 1 minute
    assert budgets.check(run) == ["00_welcome: time 61 s is over its budget of 60 s"]


def test_the_course_over_its_time_budget_is_a_problem():
    run = good_run()
    run.notebooks += [NotebookRun(f"0{i}_more", seconds=170.0, peak_mib=1.0) for i in range(5)]
    assert budgets.check(run) == ["the 7 notebook(s) together: time 970 s is over its budget "
                                  "of 900 s"]


def test_memory_and_a_slow_micro_benchmark_are_checked():
    run = good_run()
    run.notebooks[1].peak_mib = 5000.0
    run.micro[0].ratio = 6.0
    assert budgets.check(run) == [
        "01_convolution_pooling: peak memory 5000 MiB is over its budget of 4096 MiB",
        "conv2d vs F.conv2d, forward: ratio 6× is over its budget of 5×",
    ]


def test_on_a_gpu_only_the_whole_course_has_a_time_budget_and_ratios_have_none():
    run = good_run("cuda")
    run.notebooks[1].seconds = 110.0  # over 3 minutes would be fine; the course is not
    run.micro[0].ratio = 6.0
    assert budgets.check(run) == ["the 2 notebook(s) together: time 130 s is over its budget "
                                  "of 120 s"]


def test_a_notebook_or_micro_benchmark_that_failed_is_a_problem_whatever_its_figures():
    run = good_run()
    run.notebooks[1].error = "cell 3 (train): RuntimeError: boom"
    run.notebooks[1].metrics = []
    run.micro.append(MicroResult("attention", "attention: from scratch vs torch",
                                 error="KeyError: 'scaled_dot_product_attention'"))
    assert budgets.check(run) == [
        "01_convolution_pooling: failed: cell 3 (train): RuntimeError: boom",
        "attention: from scratch vs torch: failed: KeyError: 'scaled_dot_product_attention'",
    ]


def test_the_thresholds_are_the_graded_checks_own():
    """Bench reads each notebook's thresholds from its QualityChecks: every graded figure of
    the notebook's check package, with the same minimum, and the reported-only figures at 0."""
    for notebook, package in budgets.CHECKS.items():
        assert (ROOT / "solutions" / notebook).is_dir(), notebook
        checks = importlib.import_module(f"course_utils.checks.{package}")
        graded = {}
        for value in vars(checks).values():
            if isinstance(value, QualityCheck):
                graded.update(value.thresholds)
        assert graded and all(m > 0 for m in graded.values()), (notebook, graded)
        read = budgets.thresholds(notebook)
        assert {k: v for k, v in read.items() if v > 0} == graded, notebook
    assert budgets.thresholds("05_vilt_vqa")["VQA accuracy: count"] > 0.5
    assert budgets.thresholds("05_vilt_vqa")["VQA accuracy: relation"] == 0.0
    assert budgets.thresholds("03_similarity_contrastive") == {}


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def fake_runs(monkeypatch):
    """The command with notebooks.run_notebook answering ``runs[name]`` instead of running."""
    runs: dict[str, NotebookRun] = {}
    monkeypatch.setattr(notebooks, "run_notebook", lambda path, device: runs[path.stem])
    return runs


# --- calibrated budgets ----------------------------------------------------------------------


def on_machine(run: Report, factor: float, calibrated: bool = True) -> Report:
    """``run`` as a machine ``factor`` times slower than the reference would time it."""
    for notebook in run.notebooks:
        notebook.seconds *= factor
    if calibrated:
        seconds = budgets.REFERENCE.calibration_s * factor
        run.calibration = Calibration(seconds, [seconds] * 6, threads=2, load=0.0)
    return run


def test_the_calibration_times_a_fixed_workload_several_times():
    calibration = calibrate.calibrate(repeats=2, steps=2)
    assert len(calibration.repeats) == 2 and all(s > 0 for s in calibration.repeats)
    assert calibration.seconds == statistics.median(calibration.repeats)
    assert calibration.threads == torch.get_num_threads() and calibration.spread >= 0


def test_a_busy_machine_is_named_as_the_reason_not_the_course():
    quiet = Calibration(1.0, [1.0, 1.02, 0.99], load=0.1)
    assert quiet.warnings() == []
    noisy = Calibration(1.0, [0.9, 1.0, 1.5], load=1.7)
    warnings = noisy.warnings()
    assert len(warnings) == 2 and "differ by 60 %" in warnings[0] and "1.70 per core" in \
        warnings[1]
    run = on_machine(good_run(), 1.0)
    run.calibration = noisy
    assert "**Warning:** the calibration's repeats differ" in report.markdown(run, [])


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.4, 4.0])
def test_the_same_course_gets_the_same_verdict_on_a_fast_or_slow_machine(factor):
    run = good_run()
    run.notebooks[0].seconds = 50.0  # 00_welcome: within its minute on the reference machine
    assert budgets.check(on_machine(run, factor)) == []


def test_in_seconds_a_slow_machine_would_fail_a_course_that_is_fine():
    run = good_run()
    run.notebooks[0].seconds = 50.0
    assert budgets.check(on_machine(run, 2.4, calibrated=False)) == [
        "00_welcome: time 120 s is over its budget of 60 s",
        "01_convolution_pooling: time 240 s is over its budget of 180 s"]


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.4])
def test_a_notebook_made_one_and_a_half_times_slower_fails_on_any_machine(factor):
    run = good_run()
    run.notebooks[0].seconds = 50.0 * 1.5  # 75 reference seconds, over 00_welcome's 60
    problems = budgets.check(on_machine(run, factor))
    units = 60 / budgets.REFERENCE.calibration_s
    assert problems == [f"00_welcome: time {75 / budgets.REFERENCE.calibration_s:.1f} units "
                        f"({75 * factor:.1f} s on this machine) is over its budget of "
                        f"{units:.1f} units (60 s on the reference machine)"]


def test_the_report_says_how_fast_the_machine_was_and_shows_units():
    run = on_machine(good_run(), 2.0)
    text = report.markdown(run, budgets.check(run))
    assert "this machine ran 2.00× slower than the reference machine" in text
    assert "| notebook | time | units | budget (units) | budget (reference s) |" in text
    units = 40.0 / run.calibration.seconds
    assert f"| 00_welcome | 40.0 s | {units:.1f} | ≤ {60 / budgets.REFERENCE.calibration_s:.1f}" \
        in text
    data = run.to_json([])
    assert data["calibration"]["seconds"] == run.calibration.seconds


def test_the_command_calibrates_before_and_after_the_notebooks(fake_runs, tmp_path,
                                                               monkeypatch, capsys):
    calls = []

    def repeats(device="cpu"):
        calls.append(device)
        return [budgets.REFERENCE.calibration_s * 3] * calibrate.REPEATS

    monkeypatch.setattr(calibrate, "time_repeats", repeats)
    fake_runs["00_welcome"] = NotebookRun("00_welcome", seconds=150.0, peak_mib=1.0)
    options = command.Options(root=ROOT, names=["00_welcome"], device="cpu", check=True,
                              json_path=tmp_path / "bench.json", micro=False)
    assert command.main(options) == 0  # 150 s on a machine 3× slower: 50 reference seconds
    assert calls == ["cpu", "cpu"]
    assert "3.00× slower than the reference machine" in capsys.readouterr().out
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert len(saved["calibration"]["repeats"]) == 2 * calibrate.REPEATS
    options.calibrate = False  # plain seconds: 150 s is over 00_welcome's 60
    assert command.main(options) == 1


def test_doctor_tells_a_student_how_long_each_notebook_should_take(monkeypatch):
    from course_utils.tools import doctor

    monkeypatch.setattr(calibrate, "calibrate", lambda repeats: Calibration(
        budgets.REFERENCE.calibration_s * 2, [1.0, 1.0], load=0.0))
    line = doctor.check_speed()
    assert "2.0× the reference machine's time" in line
    slowest = max(budgets.REFERENCE.notebook_s.values())
    assert f"about {round(slowest * 2 / 60)} min" in line


def test_check_exits_1_and_names_the_notebook_and_figure(fake_runs, tmp_path, capsys):
    fake_runs["01_convolution_pooling"] = NotebookRun(
        "01_convolution_pooling", seconds=1.0, peak_mib=1.0,
        metrics=[Metric("SmallCNN held-out accuracy", 0.5, "%")])
    options = command.Options(root=ROOT, names=["01_convolution_pooling"], device="cpu",
                              json_path=tmp_path / "bench.json", micro=False, calibrate=False)
    assert command.main(options) == 0  # without --check, only a failure fails
    options.check = True
    assert command.main(options) == 1
    out = capsys.readouterr().out
    assert "- 01_convolution_pooling: 'SmallCNN held-out accuracy' is 50.0 %" in out
    assert json.loads((tmp_path / "bench.json").read_text())["problems"]


def test_a_failed_notebook_fails_the_command_even_without_check(fake_runs, tmp_path):
    fake_runs["00_welcome"] = NotebookRun("00_welcome", seconds=1.0, error="cell 1: boom")
    options = command.Options(root=ROOT, names=["00_welcome"], device="cpu",
                              json_path=tmp_path / "bench.json", micro=False, calibrate=False)
    assert command.main(options) == 1


def test_an_unknown_notebook_is_refused_with_the_choices(tmp_path, capsys):
    options = command.Options(root=ROOT, names=["99_nothing"], device="cpu",
                              json_path=tmp_path / "bench.json", micro=False)
    assert command.main(options) == 2
    assert "00_welcome" in capsys.readouterr().err


def test_benchmark_is_an_alias_of_bench():
    args = cli.parser().parse_args(["benchmark", "00_welcome", "--device", "cpu", "--check",
                                    "--skip-micro", "--json", "out.json"])
    assert (args.names, args.device, args.check, args.skip_micro, str(args.json_path)) == \
        (["00_welcome"], "cpu", True, True, "out.json")


# --- the kernels (real ones, a second or two each) -----------------------------------------


def write_notebook(folder, *sources: str):
    path = folder / "synthetic.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def test_the_figures_a_notebook_reports_are_collected_and_its_kernel_measured(tmp_path):
    path = write_notebook(
        tmp_path,
        "import course_utils\ndevice = course_utils.get_device()",
        "course_utils.report_metric('accuracy', 0.97, '%')\n"
        "course_utils.report_metric('loss', 0.25)",
        "course_utils.report_metric('accuracy', 0.5, '%')",
    )
    run = notebooks.run_notebook(path, "cpu")
    assert run.error is None
    assert run.metrics == [Metric("accuracy", 0.97, "%"), Metric("loss", 0.25, ""),
                           Metric("accuracy", 0.5, "%")]
    assert run.device == "cpu"  # --device cpu reached the kernel
    assert run.seconds > 0 and run.peak_mib > 0
    assert run.gpu_peak_mib is None  # this notebook never used CUDA
    assert len(nbformat.read(path, as_version=4).cells) == 3  # the file is left alone


def test_the_device_flag_reaches_the_kernel(tmp_path):
    path = write_notebook(tmp_path, "import course_utils\nprint(course_utils.get_device())")
    run = notebooks.run_notebook(path, "cuda")
    if torch.cuda.is_available():
        assert run.error is None and run.device == "cuda"
    else:
        assert "COURSE_DEVICE=cuda" in run.error and "sees no cuda device" in run.error


def test_a_failing_cell_is_named_and_stops_the_notebook(tmp_path):
    path = write_notebook(tmp_path, "x = 1", "raise ValueError('wrong')", "y = 2")
    run = notebooks.run_notebook(path, "cpu")
    assert run.error == "cell 1: ValueError: wrong"
    assert run.peak_mib > 0  # the kernel still answered


def test_a_cell_over_the_time_limit_is_interrupted_and_named(tmp_path):
    path = write_notebook(tmp_path, "import time\ntime.sleep(60)")
    run = notebooks.run_notebook(path, "cpu", cell_timeout=1)
    assert run.error == "cell 0: still running after the per-cell limit of 1 s (interrupted)"


def test_the_kernel_environment_chooses_the_device_and_hides_gpus_for_cpu():
    cpu, cuda = notebooks.kernel_environment("cpu"), notebooks.kernel_environment("cuda")
    assert (cpu["COURSE_DEVICE"], cpu["CUDA_VISIBLE_DEVICES"], cpu[BENCH_VARIABLE]) == \
        ("cpu", "", "1")
    assert cuda["COURSE_DEVICE"] == "cuda"


# --- what the kernels call -------------------------------------------------------------------


def test_report_metric_outside_the_benchmark_prints_one_line(monkeypatch, capsys):
    monkeypatch.delenv(BENCH_VARIABLE, raising=False)
    course_utils.report_metric("held-out accuracy", 0.97, "%")
    course_utils.report_metric("loss", 0.123456)
    assert capsys.readouterr().out == "held-out accuracy: 97.0 %\nloss: 0.1235\n"


def test_get_device_obeys_course_device(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert course_utils.get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="expected cpu, cuda or mps"):
        course_utils.get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="no cuda device"):
            course_utils.get_device()


# --- the micro-benchmarks ----------------------------------------------------------------------


def test_the_micro_benchmarks_give_finite_ratios_on_tiny_sizes():
    tiny = micro.MicroSizes(conv=(2, 3, 8, 8, 4), attention=(2, 2, 5, 4), repeats=3, warmup=1)
    results = micro.run_micro(ROOT, "cpu", tiny)
    assert [(r.key, r.error) for r in results] == [("conv2d", None), ("attention", None),
                                                   ("attention", None)]
    for result in results:
        assert math.isfinite(result.ratio) and result.ratio > 0
        assert result.ratio == pytest.approx(result.ours_ms / result.torch_ms)


def test_a_micro_benchmark_whose_two_sides_disagree_is_refused():
    tiny = micro.MicroSizes(conv=(2, 3, 8, 8, 4))
    [(name, shape, (ours, theirs))] = micro.conv2d_jobs(lambda x, w, b, padding: x, tiny,
                                                        torch.device("cpu"))
    with pytest.raises(AssertionError):
        micro.compare("conv2d", name, shape, (ours, theirs), tiny, "cpu")


def test_side_by_side_alternates_the_two_sides_after_the_warm_up():
    calls = []
    micro.side_by_side(lambda: calls.append("ours"), lambda: calls.append("torch"),
                       repeats=3, warmup=1)
    assert calls == ["ours", "torch"] * 4
