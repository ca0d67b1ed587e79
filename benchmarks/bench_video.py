"""Benchmark video decoding on CPU: PyAV vs OpenCV vs torchcodec, for the two jobs the harness has.

    python benchmarks/bench_video.py VIDEO [VIDEO ...] [--threads 1] [--repeat 3]

* ``sequential``: decode a whole file and resize every frame to height 340 RGB, as
  ``ravar-bench data frames`` does (frames/s, higher is better);
* ``window``: open the file, seek and decode the frames of a 3 s window in the middle, as
  ``ravar-bench predict`` does (ms, lower is better; includes opening the file).

Every library gets the same work with a bicubic resize: PyAV exactly as the harness does it
(``ravar_bench.video.to_rgb``: OpenCV colour conversion and resize when OpenCV is installed, else
swscale; ``--pyav-swscale`` forces swscale), OpenCV ``VideoCapture`` + ``cv2.resize`` INTER_CUBIC,
torchcodec with its decoder-side ``Resize``. A library
that is not installed is reported as such, not silently dropped. Prints one JSON object; the
best of ``--repeat`` runs counts (the machine is shared, so the minimum is the honest figure).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

HEIGHT = 340
WINDOW_S = 3.0


def _size(w: int, h: int) -> tuple[int, int]:
    return max(1, round(w * HEIGHT / h)), HEIGHT


# ------------------------------------------------------------------------------------- PyAV
def pyav_sequential(path: str, threads: int) -> int:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_count = threads
        s.thread_type = "AUTO" if threads != 1 else "SLICE"
        w, h = _size(s.codec_context.width, s.codec_context.height)
        n = 0
        for frame in c.decode(s):
            _convert(frame, (w, h))
            n += 1
    return n


def _convert(frame, size: tuple[int, int]) -> None:
    if SWSCALE:
        frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="BICUBIC")
    else:
        from ravar_bench.video import to_rgb

        to_rgb(frame, size)


SWSCALE = False


def pyav_window(path: str, threads: int) -> int:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_count = threads
        mid = float(s.duration * s.time_base) / 2 if s.duration else float(c.duration) / 2e6
        t0, t1 = mid - WINDOW_S / 2, mid + WINDOW_S / 2
        c.seek(int(t0 / s.time_base), stream=s, backward=True)
        w, h = _size(s.codec_context.width, s.codec_context.height)
        n = 0
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base)
            if t < t0 - 1e-6:
                continue
            if t > t1:
                break
            _convert(frame, (w, h))
            n += 1
    return n


# ----------------------------------------------------------------------------------- OpenCV
def cv2_sequential(path: str, threads: int) -> int:
    import cv2

    cv2.setNumThreads(threads)
    cap = cv2.VideoCapture(path)
    w, h = _size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def cv2_window(path: str, threads: int) -> int:
    import cv2

    cv2.setNumThreads(threads)
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    mid = count / fps / 2
    t0, t1 = mid - WINDOW_S / 2, mid + WINDOW_S / 2
    cap.set(cv2.CAP_PROP_POS_MSEC, t0 * 1000)
    w, h = _size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    n = 0
    while cap.get(cv2.CAP_PROP_POS_MSEC) <= t1 * 1000:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


# ------------------------------------------------------------------------------- torchcodec
def _tc_decoder(path: str, threads: int):
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    probe = VideoDecoder(path)
    w, h = _size(probe.metadata.width, probe.metadata.height)
    return VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=threads,
                        transforms=[Resize((h, w))])


def torchcodec_sequential(path: str, threads: int) -> int:
    dec = _tc_decoder(path, threads)
    n = 0
    for start in range(0, len(dec), 64):
        n += len(dec.get_frames_in_range(start, min(start + 64, len(dec))).data)
    return n


def torchcodec_window(path: str, threads: int) -> int:
    dec = _tc_decoder(path, threads)
    mid = float(dec.metadata.duration_seconds) / 2
    return len(dec.get_frames_played_in_range(mid - WINDOW_S / 2, mid + WINDOW_S / 2).data)


LIBRARIES: dict[str, tuple[str, Callable[[str, int], int], Callable[[str, int], int]]] = {
    "pyav": ("av", pyav_sequential, pyav_window),
    "opencv": ("cv2", cv2_sequential, cv2_window),
    "torchcodec": ("torchcodec", torchcodec_sequential, torchcodec_window),
}


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception as exc:  # noqa: BLE001  (torchcodec raises RuntimeError without FFmpeg libs)
        return f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return str(getattr(mod, "__version__", "?"))


def _best(fn: Callable[[str, int], int], path: str, threads: int, repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        n = fn(path, threads)
        times.append(time.perf_counter() - start)
    return min(times), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="decoder threads per library (default 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--pyav-swscale", action="store_true", help="PyAV converts with swscale only")
    args = ap.parse_args(argv)
    global SWSCALE
    SWSCALE = args.pyav_swscale
    try:
        import cv2

        cv2.setNumThreads(args.threads)  # the harness's conversion path uses OpenCV too
    except ImportError:
        pass
    out: dict = {"threads": args.threads, "repeat": args.repeat, "cpu_count": os.cpu_count(),
                 "pyav_conversion": "swscale" if SWSCALE else "ravar_bench.video.to_rgb",
                 "load_avg": os.getloadavg(), "machine": platform.processor() or platform.machine(),
                 "libraries": {}, "results": []}
    for name in args.libraries.split(","):
        module, seq, win = LIBRARIES[name]
        version = _version(module)
        out["libraries"][name] = version
        if version is None or version.startswith("unavailable"):
            continue
        for video in args.videos:
            seq_s, seq_n = _best(seq, str(video), args.threads, args.repeat)
            win_s, win_n = _best(win, str(video), args.threads, args.repeat)
            out["results"].append({
                "library": name, "video": video.name, "sequential_frames": seq_n,
                "sequential_fps": round(seq_n / seq_s, 1), "window_frames": win_n,
                "window_ms": round(win_s * 1000, 1)})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
