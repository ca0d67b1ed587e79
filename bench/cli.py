"""``ravar-bench``: the command line. Thin by design: parse, call the modules, print.

Heavy libraries are imported inside the subcommands, so ``ravar-bench --help`` is instant. Errors
of ours (bad files, keys, data, options) print one line naming the file/key and exit with status 2
(1 for ``data check`` problems and failed jobs); ``--debug`` shows the traceback instead.
See docs/cli.md for every command with examples.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .logs import LEVELS

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """A user-facing error raised by the CLI itself (message printed as is)."""


def _say(*args: Any) -> None:
    """Print on the main process only (torchrun starts one CLI per rank)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, flush=True)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Our error types (imported lazily; a module that is missing contributes nothing)."""
    errors: list[type[BaseException]] = [CLIError, ValueError, FileNotFoundError, NotADirectoryError,
                                         PermissionError]
    for module, names in (
        ("ravar_bench.baselines", ("BaselineError",)), ("ravar_bench.jobs", ("RunError",)),
        ("ravar_bench.data.specs", ("DataSpecError",)),
        ("ravar_bench.store", ("StoreError",)), ("ravar_bench.adapters.registry", ("AdapterError",)),
        ("ravar_bench.adapters.weights", ("WeightsUnavailable",)),
        ("ravar_bench.data.prepared", ("PreparedDataError",)), ("ravar_bench.data.refava", ("RefAVAError",)),
        ("ravar_bench.data.detect", ("DetectorUnavailableError",)),
        ("ravar_bench.report.collect", ("ReportError",)), ("ravar_bench.video", ("VideoError",)),
        ("ravar_bench.checkpoint", ("CheckpointError",)), ("ravar_bench.predict", ("PredictError",)),
        ("ravar_bench.data.importer", ("AnnotationError",)),
    ):
        mod = sys.modules.get(module)
        for name in names:
            if mod is not None and hasattr(mod, name):
                errors.append(getattr(mod, name))
    return tuple(errors)


# ======================================================================================= list
def cmd_list(args: argparse.Namespace) -> int:
    what = args.what or "all"
    if what in ("adapters", "all"):
        from .adapters.registry import list_adapters

        specs = list_adapters()
        _say(f"adapters ({len(specs)}):")
        for spec in specs:
            params = ", ".join(spec.parameters()) or "-"
            _say(f"  {spec.name:<24} {spec.domain:<8} {spec.origin:<22} {spec.summary}")
            if args.verbose:
                _say(f"  {'':<24} params: {params}")
    if what in ("baselines", "all"):
        from .baselines import BaselineError, baselines_dir, list_baselines, load_baseline

        names = list_baselines()
        _say(f"baselines ({len(names)}) in {baselines_dir()}:")
        for name in names:
            try:
                b = load_baseline(name)
                paper = ""
                if b.paper is not None:
                    paper = "  paper mIoU/mAP/AUROC: " + ", ".join(
                        f"{s} " + "/".join(f"{v[k]:.2f}" if k in v else "-" for k in ("mIoU", "mAP", "AUROC"))
                        for s, v in (("val", b.paper.val), ("test", b.paper.test)) if v)
                    paper += "" if b.paper.verified else " (unverified)"
                _say(f"  {name:<30} {b.domain:<8} {b.adapter:<22} {b.title}{paper if args.verbose else ''}")
            except (BaselineError, ValueError) as exc:
                _say(f"  {name:<30} INVALID: {exc}")
    if what in ("suites", "all"):
        from .baselines import BaselineError, list_suites, load_suite

        names = list_suites()
        _say(f"suites ({len(names)}):")
        for name in names:
            try:
                s = load_suite(name, skip_missing=True)
                miss = f"; missing baseline files: {', '.join(s.missing)}" if s.missing else ""
                _say(f"  {name:<14} {len(s.entries)} entries x {s.seeds} seeds, data {s.data}, "
                     f"{len(s.controls) * (1 + len(s.perturbations) * len(s.severities))} conditions - {s.title}{miss}")
            except (BaselineError, ValueError) as exc:
                _say(f"  {name:<14} INVALID: {exc}")
    if what in ("fusions", "all"):
        from .adapters.fusion import list_fusions

        specs = list_fusions()
        _say(f"fusion variants ({len(specs)}; use with adapter fusion_model, fusion = <id>):")
        for spec in specs:
            names = ", ".join((spec.name, *spec.aliases))
            _say(f"  {spec.id:<11} {names:<44} {spec.summary}")
            if args.verbose:
                hp = ", ".join(f"{k}={p.default!r}" for k, p in spec.parameters().items()
                               if k not in ("streams", "query_stream"))
                _say(f"  {'':<11} hparams: {hp or '-'}")
    if what in ("perturbations", "all"):
        from .data.perturb import PERTURBATIONS, SEVERITIES

        _say(f"perturbations ({len(PERTURBATIONS)}; suite key perturbations, severities "
             f"{SEVERITIES[0]}-{SEVERITIES[-1]}):")
        _list_registry(PERTURBATIONS, first_doc_line, args.verbose)
    if what in ("executors", "all"):
        from .executors import EXECUTORS

        _say(f"executors ({len(EXECUTORS)}):")
        _list_registry(EXECUTORS, first_doc_line, args.verbose)
    if what in ("backbones", "all"):
        from .data.backbones import BACKBONES

        _say(f"backbones ({len(BACKBONES)}; person stage):")
        _list_registry(BACKBONES, lambda b: f"{b.dim}-d, weights from {b.package}", args.verbose)
    return EXIT_OK


def first_doc_line(obj: Any) -> str:
    return (obj.__doc__ or "").strip().split("\n")[0]


def _list_registry(registry: Any, summary: Callable[[Any], str], verbose: bool) -> None:
    """One line per registered name; ``-v`` adds where it was registered (module or entry point)."""
    for name in registry:
        _say(f"  {name:<18} {summary(registry[name])}")
        if verbose:
            _say(f"  {'':<18} from {registry.places[name]}")


def executor_name(value: str) -> str:
    """``--executor``: a registered executor (plug-ins too), checked while parsing, before any run."""
    from .executors import EXECUTORS
    from .jobs import RunError

    try:
        EXECUTORS.get(value)
    except RunError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def cmd_validate(args: argparse.Namespace) -> int:
    from .baselines import check_all

    problems = check_all()
    for p in problems:
        _say(p)
    _say(f"{len(problems)} problem(s)" if problems else "all baseline and suite files are valid")
    return EXIT_FAIL if problems else EXIT_OK


# ======================================================================================= data
def cmd_data_check(args: argparse.Namespace) -> int:
    from .data.refava import validate_folder

    problems = validate_folder(args.path, tuple(args.splits), args.frames, args.policy)
    for p in problems:
        _say(str(p))
    if problems:
        _say(f"{len(problems)} problem(s) in {args.path}")
        return EXIT_FAIL
    _say(f"{args.path}: OK ({', '.join(args.splits)}; {args.frames} frames, policy {args.policy})")
    return EXIT_OK


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synth import generate

    made = generate(size=args.size, seed=args.seed, out=Path(args.out), progress=args.progress)
    for split, path in sorted(made.items()):
        _say(f"{split}: {path}")
    return EXIT_OK


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_refava

    out = Path(args.out)
    for split in args.splits:
        prepared = prepare_refava(args.path, split, out / split, num_frames=args.frames,
                                  frame_size=(args.size, args.size), key_frame_size=(args.size, args.size),
                                  policy=args.policy, detector=args.detector, progress=args.progress)
        _say(f"{split}: {len(prepared)} instances, {prepared.num_clips} clips -> {out / split}")
    _say(f"use it with --data {out}")
    return EXIT_OK


def cmd_data_frames(args: argparse.Namespace) -> int:
    import time

    from .data.extract import ExtractSettings, extract_videos, list_videos

    src = Path(args.videos)
    videos = [src] if src.is_file() else list_videos(src)
    start = time.perf_counter()
    results = extract_videos(videos, args.out, ExtractSettings(start=args.start, end=args.end),
                             jobs=args.jobs, progress=args.progress)
    seconds = time.perf_counter() - start
    written = sum(r.frames for r in results if r.status == "done")
    for r in results:
        _say(f"  {r.video_id}: {r.frames} frames ({'kept, already extracted' if r.status == 'kept' else 'written'})")
    rate = f" in {seconds:.1f} s ({written / seconds:.0f} frames/s)" if written else ""
    _say(f"{len(results)} video(s) -> {Path(args.out) / 'frames'}: {written} frames written{rate}")
    _say(f"add the annotation pickles (or use `ravar-bench data import`), then `ravar-bench data check {args.out}`")
    return EXIT_OK


def cmd_data_import(args: argparse.Namespace) -> int:
    from .data.importer import import_annotations

    res = import_annotations(args.csv, args.videos, args.out, start=args.start, end=args.end,
                             detector=args.detector, jobs=args.jobs, progress=args.progress)
    for split in ("train", "val", "test"):
        _say(f"  {split}: {res.instances[split]} instances in {res.clips[split]} clips")
    for note in res.notes:
        _say(f"  note: {note}")
    _say(f"RefAVA folder {res.out} ({len(res.videos)} video(s), candidates: {res.candidates}); "
         f"check it with `ravar-bench data check {res.out}`, run with --data refava:{res.out}")
    return EXIT_OK


# ==================================================================================== predict
def cmd_predict(args: argparse.Namespace) -> int:
    import time

    from .checkpoint import load_job
    from .predict import check_texts, format_result, predict_clip, resolve_job, window_time, write_outputs
    from .video import ImageFolder, VideoFile

    texts = check_texts(args.text or [])
    if (args.video is None) == (args.frames is None):
        raise CLIError("predict: give exactly one of --video FILE or --frames FOLDER")
    if args.video is not None and Path(args.video).is_dir():
        raise CLIError(f"--video {args.video}: is a folder; pass a folder of frame images with --frames")
    if args.frames is not None and not Path(args.frames).is_dir():
        raise CLIError(f"--frames {args.frames}: not a folder of frame images")
    job_dir = resolve_job(args.job, args.baseline, args.seed)
    source = VideoFile(args.video) if args.video is not None else ImageFolder(args.frames, args.fps)
    window_time(source.info.duration, args.time, str(source.info.path))  # before loading the model
    start = time.perf_counter()
    job = load_job(job_dir)
    load_ms = (time.perf_counter() - start) * 1000
    pred = predict_clip(job, source, texts, args.time, device=args.device, top_k=args.top)
    pred.result["timing_ms"]["load_model"] = round(load_ms, 1)
    written = write_outputs(pred, args.out)
    print(format_result(pred.result))
    print(f"wrote {written['json']} and {len(written['pictures'])} picture(s): "
          f"{', '.join(p.name for p in written['pictures'])}")
    return EXIT_OK


# ======================================================================================== run
def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set epochs=2 --set lr=1e-3``: TOML values for TrainConfig overrides, checked here so
    that a bad one is blamed on the flag (not on the suite file it would override)."""
    import tomllib

    from .registry import did_you_mean
    from .train import TrainConfig

    known = sorted(TrainConfig.__dataclass_fields__)
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--set {pair!r}: expected KEY=VALUE (a training option, e.g. epochs=2)")
        if key not in known:
            raise CLIError(f"--set {pair!r}: unknown training option {key!r}{did_you_mean(key, known)}; "
                           f"known: {', '.join(known)}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value  # a bare string such as device=cuda
        try:
            TrainConfig.from_dict({key: out[key]}, where=f"--set {pair!r}")
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    return out


def _run(args: argparse.Namespace, suite_name: str) -> int:
    from . import distributed
    from .baselines import load_suite
    from .data.specs import resolve_data
    from .runner import run_suite

    overrides = _parse_sets(getattr(args, "set", None) or [])
    dist = distributed.init_from_env(str(overrides.get("device", "cpu")))
    suite = load_suite(suite_name, skip_missing=args.skip_missing)
    if suite.missing:
        log.warning("skipping entries whose baseline file does not exist: %s", ", ".join(suite.missing))
    spec = args.data or suite.data
    data = resolve_data(spec, progress=args.progress and dist.is_main)
    workers = args.jobs if args.jobs is not None else (1 if dist.distributed else min(4, os.cpu_count() or 1))
    summary = run_suite(suite, data, args.out, seeds=args.seeds, executor=args.executor, workers=workers,
                        ray_address=args.ray_address, ray_cpus=args.ray_cpus, ray_job_cpus=args.ray_job_cpus,
                        ray_job_gpus=args.ray_job_gpus, overwrite=args.overwrite,
                        limit_jobs=args.limit_jobs, dry_run=args.dry_run, train_overrides=overrides,
                        progress=args.progress)
    if args.dry_run:
        _say(f"suite {suite.name} on {data.spec} ({data.fingerprint}): {summary.jobs} jobs")
        for p in summary.planned:
            _say(f"  {p['job_id']}  {p['status']:<8} seed {p['seed']:<3} {p['label']}  [{p['baseline']}]")
        return EXIT_OK
    _say(summary.line())
    if summary.outdated:
        _say(f"note: {len(summary.outdated)} kept job(s) were made with another version of their adapter's "
             f"source ({', '.join(summary.outdated[:3])}{', ...' if len(summary.outdated) > 3 else ''}); "
             "their results are kept; --overwrite always redoes them")
    for o in summary.failed:
        _say(f"  FAILED {o.label} seed {o.seed} ({o.job_id}): {o.error}")
    if summary.failed:
        _say(f"failures: {Path(args.out) / 'failures'}/<job_id>.json (error and traceback of each); "
             "the same command retries them")
    if suite_name != "quickstart":  # quickstart builds its report and prints where
        _say(f"report: ravar-bench report {args.out} --suite {suite.name}  (writes {Path(args.out) / 'report'})")
    busy = [o for o in summary.outcomes if o.status == "busy"]
    for o in busy:
        _say(f"  still running elsewhere: {o.label} seed {o.seed} ({o.job_id})")
    if suite_name != "quickstart" and dist.is_main:  # quickstart prints them from its report
        from .report.build import summary_lines

        for line in summary_lines(args.out, suite.name):  # did it learn?, expected orderings
            _say(line)
    return EXIT_FAIL if summary.failed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    return _run(args, args.suite)


def cmd_quickstart(args: argparse.Namespace) -> int:
    args.skip_missing = True
    code = _run(args, "quickstart")
    if os.environ.get("RANK", "0") != "0" or args.dry_run:
        return code
    from .report import build_report

    out_dir = Path(args.out) / "report"
    written = build_report(args.out, "quickstart", out_dir)
    _say(f"report: {out_dir}")
    for key in ("txt:learning", "txt:expectations"):  # the first line of each is its summary
        if key in written:
            _say(written[key].read_text().splitlines()[0])
    return code


# ===================================================================================== scoring
def _load_scored(pred_path: str, data_spec: str | None, split: str | None):
    """Predictions aligned to the split's ground truth (every key present exactly once)."""
    import numpy as np

    from .protocol import Predictions
    from .data.specs import resolve_data
    from .store import read_predictions

    preds, meta = read_predictions(pred_path)
    spec = data_spec or meta.get("data_spec")
    if not spec:
        raise CLIError(f"{pred_path}: the file does not name its data; pass --data")
    split = split or meta.get("split")
    if not split:
        raise CLIError(f"{pred_path}: the file does not name its split; pass --split")
    data = resolve_data(spec, progress=False)
    gt = data.load(split)
    want = meta.get("split_fingerprint")
    if want and want != data.split_fingerprints[split]:
        log.warning("warning: %s was made on split %r with fingerprint %s, the data given has %s; "
                    "scoring anyway by key", pred_path, split, want, data.split_fingerprints[split])
    position = {k: i for i, k in enumerate(preds.keys)}
    missing = [k for k in gt.keys if k not in position]
    extra = len(preds.keys) - (len(gt.keys) - len(missing))
    if missing or extra:
        raise CLIError(f"{pred_path}: predictions do not cover split {split!r} of {spec}: "
                       f"{len(missing)} key(s) missing (e.g. {missing[:3]}), {extra} key(s) not in the split")
    order = np.array([position[k] for k in gt.keys])
    aligned = Predictions(list(gt.keys), preds.scores[order], preds.boxes[order])
    return aligned, gt, meta, spec, split


def cmd_score(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from .metrics import PROFILES, score_all

    preds, gt, meta, spec, split = _load_scored(args.predictions, args.data, args.split)
    if args.profile and args.profile not in PROFILES:
        raise CLIError(f"--profile {args.profile!r}: unknown; choose one of {', '.join(PROFILES)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = score_all(preds.scores, np.asarray(gt.labels), preds.boxes, np.asarray(gt.boxes))
    if args.profile:
        metrics = {args.profile: metrics[args.profile]}
    result: dict[str, Any] = {"predictions": args.predictions, "data": spec, "split": split,
                              "n": len(preds.keys), "metrics": metrics}
    if args.bootstrap:
        from .metrics import headline_cis

        result["ci"] = headline_cis(preds.scores, np.asarray(gt.labels), preds.boxes, np.asarray(gt.boxes),
                                    gt.video_ids, args.bootstrap, 0)
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    print(f"{args.predictions}: {len(preds.keys)} instances of {spec} [{split}]")
    for profile, values in metrics.items():
        for key, value in values.items():
            ci = result.get("ci", {}).get(f"{profile}.{key}")
            extra = f"  [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else ""
            print(f"  {profile}.{key:<18} {value:8.2f}{extra}")
    for w in {str(w.message) for w in caught}:
        print(f"  note: {w}")
    return EXIT_OK


def cmd_explain_gap(args: argparse.Namespace) -> int:
    import numpy as np

    from .metrics import explain_gap
    from .report import format_explain_gap, paper_for_predictions

    preds, gt, meta, spec, split = _load_scored(args.predictions, args.data, args.split)
    rows = explain_gap(preds.scores, np.asarray(gt.labels), preds.boxes, np.asarray(gt.boxes),
                       batch_size=args.batch_size)
    print(f"{args.predictions}: {len(preds.keys)} instances of {spec} [{split}]")
    paper, label = paper_for_predictions(args.predictions, split)
    print(format_explain_gap(rows, paper, paper_label=label))
    return EXIT_OK


# ===================================================================================== report
def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report
    from .store import Store

    store = Store(args.results, create=False)
    suite = args.suite
    if suite is None:
        suites = sorted(p.stem for p in (store.root / "suites").glob("*.json"))
        if len(suites) != 1:
            raise CLIError(f"{args.results}: holds suites {', '.join(suites) or '(none)'}; pass --suite")
        suite = suites[0]
    out = Path(args.out) if args.out else store.root / "report"
    kwargs = {"formats": tuple(args.format.split(","))} if args.format else {}
    build_report(str(store.root), suite, out, **kwargs)
    _say(f"report for suite {suite}: {out}")
    return EXIT_OK


# ===================================================================================== doctor
def cmd_doctor(args: argparse.Namespace) -> int:
    import time

    from . import doctor

    start = time.perf_counter()
    rows = doctor.run([s.strip() for s in args.suite.split(",") if s.strip()], scale=args.scale,
                      device=args.device, cpu_max_params=args.cpu_max_params, baselines=args.baseline,
                      progress=lambda row: _say(doctor.progress_line(row)))
    _say(doctor.table(rows))
    if args.csv:
        _say(f"wrote {doctor.write_csv(rows, args.csv)}")
    _say(doctor.summary_line(rows, time.perf_counter() - start))
    return EXIT_OK if all(r.ok for r in rows) else EXIT_FAIL


# ====================================================================================== bench
BENCHMARKS = ("metrics", "synth", "fusion", "video", "gpu")


def cmd_bench(args: argparse.Namespace) -> int:
    from .provenance import source_root

    folder = source_root() / "benchmarks"
    candidates = [folder / f"bench_{args.name}.py", folder / f"{args.name}.py"]
    script = next((c for c in candidates if c.is_file()), None)
    if script is None:
        raise CLIError(f"benchmark {args.name!r}: no script {candidates[0]} or {candidates[1]}")
    return subprocess.call([sys.executable, str(script), *args.args])


# ===================================================================================== parser
def common_options() -> argparse.ArgumentParser:
    """--verbosity / --log-file / --debug after the subcommand too (suppressed defaults, so the
    main parser's values stand when they are not repeated)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--verbosity", choices=tuple(LEVELS), default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--log-file", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    p = argparse.ArgumentParser(
        prog="ravar-bench",
        description="Benchmark harness for Referring Atomic Video Action Recognition (RAVAR).",
        epilog="Start with: ravar-bench quickstart   (docs/cli.md lists every command)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--verbosity", choices=tuple(LEVELS), default="info",
                   help="what goes to stderr: quiet (warnings only), info (default), debug")
    p.add_argument("--log-file", metavar="FILE", help="also append every message (debug level, with times) to FILE")
    p.add_argument("--baselines", metavar="DIR", help="folder of baseline files (default: the repository's baselines/)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("list", parents=[common], help="list adapters, baselines, suites or another registered kind")
    s.add_argument("what", nargs="?", choices=("adapters", "baselines", "suites", "fusions", "perturbations",
                                               "executors", "backbones"))
    s.add_argument("-v", "--verbose", action="store_true", help="also show parameters / paper numbers")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("validate", parents=[common], help="check every baseline and suite file")
    s.set_defaults(func=cmd_validate)

    d = sub.add_parser("data", parents=[common], help="check, generate or prepare data").add_subparsers(dest="data_command", metavar="ACTION")
    s = d.add_parser("check", parents=[common], help="validate a RefAVA folder; prints every problem with file and key")
    s.add_argument("path")
    s.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    s.add_argument("--policy", default="correct", choices=("correct", "official_repeat"),
                   help="frame policy: correct, or the released loader's official_repeat")
    s.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    s.set_defaults(func=cmd_data_check)
    s = d.add_parser("synth", parents=[common], help="generate RAVAR-Synth (RefAVA layout + prepared splits)")
    s.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_data_synth)
    s = d.add_parser("prepare", parents=[common], help="prepare a RefAVA folder into prepared splits (usable as --data OUT)")
    s.add_argument("path")
    s.add_argument("--out", required=True)
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--size", type=int, default=112, help="frame and key-frame size in pixels (square)")
    s.add_argument("--policy", default="correct", choices=("correct", "official_repeat"))
    s.add_argument("--detector", default="file", choices=("file", "hog", "none"))
    s.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_data_prepare)
    s = d.add_parser("frames", parents=[common], help="videos -> ACAR-style frames (frames/<video>/image_%%06d.jpg, 30 fps, 340 px)")
    s.add_argument("videos", help="a folder of videos (.mp4 .mkv .webm .avi .mov) or one video file")
    s.add_argument("--out", required=True, help="RefAVA folder to write frames/ into")
    s.add_argument("--jobs", type=int, default=1, help="videos extracted in parallel (default 1)")
    s.add_argument("--start", type=float, default=900.0, help="first second (default 900, AVA's; 0 for short clips)")
    s.add_argument("--end", type=float, default=1800.0, help="last second (default 1800, AVA's; capped at the video's end)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_data_frames)
    s = d.add_parser("import", parents=[common], help="your own CSV annotations + videos -> a RefAVA folder (pickles + frames)")
    s.add_argument("csv", help="video,timestamp,person_id,x1,y1,x2,y2,sentence,actions[,split] (see docs/cli.md)")
    s.add_argument("--videos", required=True, help="folder holding the videos the CSV names")
    s.add_argument("--out", required=True, help="RefAVA folder to write")
    s.add_argument("--start", type=float, default=900.0, help="first extracted second (default 900; 0 for short clips)")
    s.add_argument("--end", type=float, default=1800.0)
    s.add_argument("--detector", default="hog", choices=("hog", "none"), help="candidate person boxes (default hog)")
    s.add_argument("--jobs", type=int, default=1)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_data_import)

    def run_options(s: argparse.ArgumentParser, out_default: str | None) -> None:
        s.add_argument("--data", help="data spec: synth:<tiny|small|full>[@seed], refava:<folder>, or a "
                                      "folder of prepared splits (default: the suite's)")
        s.add_argument("--seeds", type=int, help="number of seeds (default: the suite's)")
        s.add_argument("--out", required=out_default is None, default=out_default, help="results directory")
        s.add_argument("--executor", default="local", type=executor_name,
                       help="local (default), ray, or a plug-in's name (ravar-bench list executors)")
        s.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="local worker processes, one job each (default: the number of cores, at most "
                            "4; every job uses one torch thread, so numbers do not depend on N)")
        s.add_argument("--ray-address", help="Ray cluster address (default: start a local instance)")
        s.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
        s.add_argument("--ray-job-cpus", type=float, default=1.0, help="CPUs per job (Ray task; default 1)")
        s.add_argument("--ray-job-gpus", type=float, default=0.0, help="GPUs per job (Ray task; default 0)")
        s.add_argument("--overwrite", default="never", choices=("never", "always", "only-missing"),
                       help="never: keep finished jobs (resume); always: redo every job; only-missing: "
                            "redo jobs whose stored files are missing or altered")
        s.add_argument("--limit-jobs", type=int, help="run at most N of the pending jobs")
        s.add_argument("--dry-run", action="store_true", help="list the jobs and their status, run nothing")
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="training option override for every job (e.g. --set epochs=2 --set device=cuda)")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")

    s = sub.add_parser("run", parents=[common], help="run a suite (resumes: finished jobs are kept)")
    s.add_argument("suite", help="suite name (baselines/suites/<name>.toml) or path")
    s.add_argument("--skip-missing", action="store_true",
                   help="run the entries whose baseline file exists, skip the others")
    run_options(s, None)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("quickstart", parents=[common], help="run the quickstart suite on synth:small, then build its report")
    run_options(s, "runs/quickstart")
    s.set_defaults(func=cmd_quickstart, seeds=None)

    s = sub.add_parser("predict", parents=[common], help="a stored job's model on your own video and sentences")
    s.add_argument("job", help="a job folder RUNS/jobs/<id>, or a results directory with --baseline")
    s.add_argument("--baseline", help="pick the job of this baseline in the results directory")
    s.add_argument("--seed", type=int, help="with --baseline: which seed (default: the lowest)")
    s.add_argument("--video", help="a video file")
    s.add_argument("--frames", help="a folder of frame images (sorted by name) instead of a video")
    s.add_argument("--fps", type=float, default=30.0, help="frame rate of --frames (default 30, ACAR's)")
    s.add_argument("--text", action="append", help="a sentence describing one person (repeat for several)")
    s.add_argument("--time", type=float, help="key-frame time in seconds (default: the middle)")
    s.add_argument("--out", default="ravar-predict", help="folder for the JSON and pictures (default ravar-predict)")
    s.add_argument("--top", type=int, default=5, help="actions printed per sentence (default 5)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("score", parents=[common], help="re-score a stored prediction file offline")
    s.add_argument("predictions", help="a predictions/<split>.<condition>.parquet file")
    s.add_argument("--data", help="data spec (default: the one recorded in the file)")
    s.add_argument("--split", choices=("train", "val", "test"), help="default: the file's split")
    s.add_argument("--profile", help="only this metric profile (e.g. paper_v1)")
    s.add_argument("--bootstrap", type=int, default=0, help="cluster-bootstrap CIs with N resamples")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("explain-gap", parents=[common], help="one prediction file under every mAP convention")
    s.add_argument("predictions")
    s.add_argument("--data")
    s.add_argument("--split", choices=("train", "val", "test"))
    s.add_argument("--batch-size", type=int, default=8, help="eval batch size assumed by drop_last rows")
    s.set_defaults(func=cmd_explain_gap)

    s = sub.add_parser("report", parents=[common], help="leaderboards and plots of a results directory")
    s.add_argument("results")
    s.add_argument("--suite", help="suite to report (default: the only one in RESULTS)")
    s.add_argument("--out", help="output folder (default: RESULTS/report)")
    s.add_argument("--format", help="comma-separated formats, e.g. md,csv,tex,html")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("doctor", parents=[common], help="build every baseline of some suites (paper scale: random weights) "
                                      "and run one forward + training step at paper shapes")
    s.add_argument("--suite", default="main,ablation,fusion,agents", help="comma-separated suites "
                   "(default: main,ablation,fusion,agents)")
    s.add_argument("--baseline", action="append", metavar="NAME", help="check these baselines instead of suites")
    s.add_argument("--scale", default="paper", choices=("paper", "tiny"))
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "fake"),
                   help="auto: CPU up to --cpu-max-params parameters, fake tensors above")
    s.add_argument("--cpu-max-params", type=int, default=500_000_000, metavar="N")
    s.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("bench", parents=[common], help="run a benchmark script from benchmarks/")
    s.add_argument("name", choices=BENCHMARKS)
    s.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .logs import configure, progress_wanted

    args.progress = progress_wanted(not getattr(args, "no_progress", False))
    try:
        configure(args.verbosity, args.log_file, progress=args.progress)
    except ValueError as exc:
        print(f"ravar-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.baselines:
        os.environ["RAVAR_BASELINES"] = args.baselines
    func = getattr(args, "func", None)
    if func is None:
        if args.command == "data":
            parser.parse_args(["data", "--help"])
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished jobs are kept, run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ravar-bench list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL
    except Exception as exc:
        if args.debug or not isinstance(exc, _known_errors()):
            raise
        msg = str(exc).strip() or type(exc).__name__
        if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError)) and exc.filename:
            msg = f"{exc.filename}: {exc.strerror}"
        print(f"ravar-bench: error: {msg}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if "ravar_bench.distributed" in sys.modules:
            sys.modules["ravar_bench.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
