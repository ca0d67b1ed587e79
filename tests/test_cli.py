"""The ``ravar-bench`` command line: fast help, listings, data commands, run -> score ->
explain-gap -> report, clear one-line errors without tracebacks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import control_baseline, make_random_split, write_baseline_tree, write_random_data
from ravar_bench import cli
from ravar_bench.baselines import suite_path
from refava_fixtures import Inst, default_instances, write_refava

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SUITE = """
[suite]
name = "mini"
title = "Mini"
seeds = 1
controls = ["none", "text_swap"]
bootstrap = 30
[train]
epochs = 1
batch_size = 6
lr = 1e-3
[[entries]]
baseline = "prior"
[[entries]]
baseline = "text_only"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tiny = "dim = 16\nhidden = 16"
    base = write_baseline_tree(root, {
        "prior": control_baseline("prior", "prior", title="prior"),
        "text_only": control_baseline("text_only", "text_only", tiny, title="text_only"),
        "video_only": control_baseline("video_only", "video_only", tiny, title="video_only"),
    }, {"mini": SUITE})
    shutil.copy(suite_path("quickstart"), base / "suites" / "quickstart.toml")  # the real one
    data = write_random_data(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_BASELINES", str(base))
    mp.setenv("RAVAR_CACHE", str(root / "cache"))
    yield {"root": root, "base": base, "data": data}
    mp.undo()


@pytest.fixture(scope="module")
def results(env):
    out = env["root"] / "out"
    assert cli.main(["run", "mini", "--data", str(env["data"]), "--out", str(out), "--no-progress"]) == 0
    return out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------- help, list
def test_help_is_fast_because_it_imports_nothing_heavy():
    probe = ("import sys, ravar_bench.cli as c\n"
             "try:\n    c.main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
             "print('HEAVY', sorted(m for m in ('torch', 'numpy', 'ray', 'transformers') if m in sys.modules), code)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    assert "HEAVY [] 0" in out
    for command in ("list", "data", "run", "score", "report", "explain-gap", "quickstart", "bench", "validate"):
        assert command in out


def test_list_shows_adapters_with_origin_baselines_and_suites(env, capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "text_only" in out and "control" in out and "builtin" in out
    assert "baselines (3)" in out and "video_only" in out
    assert "mini" in out and "2 entries x 1 seeds" in out and "2 conditions" in out
    assert "quickstart" in out and "missing baseline files: text_only_minilm, text_blind_persons, x3d" in out  # named
    code, out, _ = run(capsys, "list", "adapters")
    assert code == 0 and "baselines (" not in out


def test_list_fusions_shows_every_variant_with_its_hyper_parameters(env, capsys):
    from ravar_bench.adapters.fusion import list_fusions

    code, out, _ = run(capsys, "list", "fusions", "-v")
    assert code == 0 and f"fusion variants ({len(list_fusions())};" in out and "adapters (" not in out
    lines = out.splitlines()
    for spec in list_fusions():
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [spec.id])
        assert spec.name in lines[row] and lines[row + 1].strip().startswith("hparams:")
    assert "dwc=False, agent_bias=False, video_grid=None" in out and "guide_scale=1.0" in out
    v3 = next(line for line in lines if line.split()[:1] == ["v3"])
    assert v3.rstrip().endswith("masked means.")  # the first sentence of the docstring, not a cut line


def test_validate_reports_a_bad_key_with_file_and_key(env, capsys):
    bad = env["base"] / "broken.toml"
    bad.write_text(control_baseline("broken", "prior", title="broken") + "[params]\nsize = 3\n")
    try:
        code, out, _ = run(capsys, "validate")
        assert code == 1 and f"{bad}: [params]: unknown parameter 'size' for adapter 'prior'" in out
    finally:
        bad.unlink()


# -------------------------------------------------------------------------------------- errors
def test_errors_are_one_line_with_exit_2_and_no_traceback(env, tmp_path):
    cmd = [sys.executable, "-m", "ravar_bench.cli", "run", "nosuch", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "RAVAR_BASELINES": str(env["base"])})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("ravar-bench: error: ") and "nosuch.toml: no such suite file" in first
    assert "mini" in first  # says what exists


def test_debug_shows_the_traceback(env, tmp_path):
    from ravar_bench.baselines import BaselineError

    with pytest.raises(BaselineError):
        cli.main(["--debug", "run", "nosuch", "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("argv, expected", [
    (["run", "mini", "--data", "synth:huge", "--out", "{tmp}/o"], "size must be one of tiny, small, full"),
    (["run", "mini", "--data", "{tmp}/none", "--out", "{tmp}/o"], "not a folder"),
    (["run", "mini", "--data", "{data}", "--out", "{tmp}/o", "--set", "epoch=2"],
     "--set 'epoch=2': unknown training option 'epoch' (did you mean 'epochs'?)"),
    (["run", "mini", "--data", "{data}", "--out", "{tmp}/o", "--set", "lr=fast"],
     "--set 'lr=fast': training option 'lr' must be float"),
    (["run", "mini", "--data", "{data}", "--out", "{tmp}/o", "--set", "epochs"], "expected KEY=VALUE"),
    (["score", "{tmp}/none.parquet", "--data", "{data}"], "none.parquet: prediction file does not exist"),
    (["report", "{tmp}"], "not a ravar-bench results directory"),
])
def test_bad_input_names_what_is_wrong(env, capsys, tmp_path, argv, expected):
    argv = [a.format(tmp=tmp_path, data=env["data"]) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and expected in err and "Traceback" not in err


# ------------------------------------------------------------------------------------- running
def test_run_dry_run_and_resume(env, results, capsys):
    code, out, _ = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(results),
                       "--dry-run", "--seeds", "2")
    assert code == 0 and out.count(" done ") == 2 and out.count(" pending ") == 2
    code, out, _ = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(results), "--no-progress")
    assert code == 0 and "2 jobs, 2 skipped" in out
    assert f"report: ravar-bench report {results} --suite mini" in out


def test_progress_bars_show_jobs_and_training_on_a_terminal_only(env, tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(tmp_path / "pipe"),
                       "--limit-jobs", "1", "--jobs", "1")
    assert code == 0 and "jobs:" not in err and "done prior seed 0" in err  # a log line instead
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(tmp_path / "tty"),
                       "--limit-jobs", "1", "--jobs", "1")
    assert code == 0 and "jobs: 100%" in err and "1/1" in err


def test_verbosity_and_log_file_work_before_or_after_the_command(env, tmp_path, capsys):
    log_file = tmp_path / "run.log"
    code, out, err = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(tmp_path / "o"),
                         "--jobs", "1", "--verbosity", "quiet", "--log-file", str(log_file))
    assert code == 0 and "done " not in err and "2 jobs, 2 done" in out
    text = log_file.read_text()
    assert "INFO ravar_bench.executors: done prior seed 0" in text and "text_only seed 0" in text
    assert "INFO ravar_bench.runner: suite mini on" in text and "2 to run" in text
    code, _, err = run(capsys, "--verbosity", "debug", "run", "mini", "--data", str(env["data"]),
                       "--out", str(tmp_path / "o"), "--jobs", "1")
    assert code == 0 and "0 to run" in err
    code, _, err = run(capsys, "list", "--log-file", str(tmp_path / "no" / "such" / "dir.log"))
    assert code == 2 and "--log-file" in err and "cannot open it for writing" in err


def test_worker_processes_give_the_same_numbers_as_one_process(env, tmp_path, capsys):
    """--jobs N: every job runs on one torch thread in its worker, so records match --jobs 1."""
    from ravar_bench.store import Store

    outs = {}
    for n in ("1", "2"):
        code, out, err = run(capsys, "run", "mini", "--data", str(env["data"]), "--out", str(tmp_path / n),
                             "--jobs", n, "--no-progress")
        assert code == 0, out + err
        store = Store(tmp_path / n)
        outs[n] = {j: store.record(j)["results"] for j in store.job_ids()}
        assert all(store.record(j)["provenance"]["torch_threads"] == 1 for j in store.job_ids())
    assert outs["1"] == outs["2"] and len(outs["1"]) == 2


def test_score_rescores_a_stored_file_to_the_stored_numbers(env, results, capsys):
    from ravar_bench.store import Store

    store = Store(results, create=False)
    job = next(r for r in store.records() if r["adapter"] == "text_only")
    path = store.job_dir(job["job_id"]) / "predictions" / "test.text_swap.parquet"
    code, out, _ = run(capsys, "score", str(path), "--json", "--bootstrap", "20")
    assert code == 0
    scored = json.loads(out)
    assert scored["split"] == "test" and scored["n"] == job["results"]["test"]["text_swap"]["n"]
    for profile, values in job["results"]["test"]["text_swap"]["metrics"].items():
        assert scored["metrics"][profile] == pytest.approx(values)
    assert set(scored["ci"]) == {"paper_v1.mIoU", "paper_v1.mAP", "paper_v1.AUROC"}
    code, out, _ = run(capsys, "score", str(path), "--data", str(env["data"]), "--profile", "paper_v1")
    assert code == 0 and "paper_v1.mAP" in out and "strict_v1" not in out
    smaller = env["root"] / "smaller"  # a test split with fewer instances than the predictions
    for i, split in enumerate(("train", "val", "test")):
        make_random_split(n_clips=4 if split == "test" else 5, seed=i, split=split).save(smaller / split)
    code, _, err = run(capsys, "score", str(path), "--data", str(smaller))
    assert code == 2 and "do not cover split 'test'" in err and "2 key(s) not in the split" in err


def test_explain_gap_prints_a_table(env, results, capsys):
    from ravar_bench.store import Store

    store = Store(results, create=False)
    job_id = store.job_ids()[0]
    code, out, _ = run(capsys, "explain-gap", str(store.job_dir(job_id) / "predictions" / "val.none.parquet"))
    assert code == 0
    lines = out.splitlines()
    assert "val" in lines[0] and len(lines) > 3
    assert any("weighted" in line.lower() for line in lines[1:])


def test_report_delegates_to_build_report(env, results, capsys, tmp_path):
    code, out, _ = run(capsys, "report", str(results), "--out", str(tmp_path / "rep"))
    assert code == 0 and "report for suite mini" in out and any((tmp_path / "rep").iterdir())


def test_quickstart_runs_the_real_suite_skipping_missing_baselines(env, tmp_path, capsys):
    code, out, err = run(capsys, "quickstart", "--data", str(env["data"]), "--out", str(tmp_path / "q"), "--dry-run")
    assert code == 0
    assert "skipping entries whose baseline file does not exist" in err and "x3d" in err  # a warning
    assert out.count(" pending ") == 2 * 3  # prior and video_only (the env's files) x the suite's 3 seeds


# ---------------------------------------------------------------------------------------- data
def test_data_check_lists_every_problem_with_file_and_key(env, tmp_path, capsys):
    insts = default_instances()
    insts[1] = Inst(insts[1].key, [0.5, 0.1, 1.7, 0.9], insts[1].labels, insts[1].text)  # box out of range
    insts[3] = Inst(insts[3].key, insts[3].box, [81], insts[3].text)  # no such AVA class
    for split in ("train", "val", "test"):
        write_refava(tmp_path / "refava", split, instances=insts if split == "val" else None)
    code, out, _ = run(capsys, "data", "check", str(tmp_path / "refava"))
    assert code == 1
    problems = [line for line in out.splitlines() if "val_set" in line]
    assert any(insts[1].key in line and "box" in line for line in problems)
    assert any(insts[3].key in line and "81" in line for line in problems)
    good = tmp_path / "good"
    for split in ("train", "val", "test"):
        write_refava(good, split)
    code, out, _ = run(capsys, "data", "check", str(good), "--frames", "8")
    assert code == 0 and "OK" in out


def test_data_prepare_then_run_on_it(env, tmp_path, capsys):
    for split in ("train", "val", "test"):
        write_refava(tmp_path / "refava", split)
    code, out, _ = run(capsys, "data", "prepare", str(tmp_path / "refava"), "--out", str(tmp_path / "prep"),
                       "--size", "32", "--no-progress")
    assert code == 0 and "train: 5 instances, 3 clips" in out
    from ravar_bench.data.specs import resolve_data

    data = resolve_data(str(tmp_path / "prep"))
    assert data.sizes == {"test": 5, "train": 5, "val": 5}


def test_data_synth_calls_the_generator(env, tmp_path, capsys, monkeypatch):
    import ravar_bench.data.synth as synth

    seen = {}

    def fake(size, seed, out, progress=True):
        seen.update(size=size, seed=seed, out=str(out), progress=progress)
        return {"train": Path(out) / "train"}

    monkeypatch.setattr(synth, "generate", fake, raising=False)
    code, out, _ = run(capsys, "data", "synth", "--size", "tiny", "--seed", "3", "--out", str(tmp_path / "s"))
    # no terminal under pytest: no progress bars
    assert code == 0 and seen == {"size": "tiny", "seed": 3, "out": str(tmp_path / "s"), "progress": False}
    assert f"train: {tmp_path / 's' / 'train'}" in out


# --------------------------------------------------------------------------------------- bench
def test_bench_runs_a_script_or_names_the_missing_one(tmp_path, capsys, monkeypatch):
    import ravar_bench.provenance as prov

    monkeypatch.setattr(prov, "source_root", lambda: tmp_path)
    code, _, err = run(capsys, "bench", "fusion")
    assert code == 2 and "bench_fusion.py" in err
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_fusion.py").write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))\nsys.exit(3)\n")
    target = tmp_path / "ran.txt"
    assert cli.main(["bench", "fusion", str(target), "--quick"]) == 3
    assert target.read_text() == "--quick"
