"""Pictures of generated clips for people: a key frame with its sentences, or a frame strip.

Used for ``docs/img/synth_example.png`` and by the tests; frames are upscaled with nearest
neighbour so the figures stay crisp.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .generate import SynthConfig, plan_clip
from .motion import KEY_T
from .render import draw_background, render_frame
from .scenes import make_video
from .writer import ClipPlan, frame_jobs

_PALETTE = ((230, 60, 60), (60, 200, 90), (70, 130, 240), (240, 200, 40))


def example_plan(seed: int = 0, difficulty: float | str = "medium", min_referred: int = 2,
                 max_tries: int = 50) -> ClipPlan:
    """A clip with at least ``min_referred`` referred people (deterministic in ``seed``)."""
    cfg = SynthConfig(size="tiny", seed=seed, difficulty=difficulty)
    for k in range(max_tries):
        rng = np.random.default_rng([seed, 777, k])
        video = make_video(rng, f"example{seed}", 0.15 + 0.6 * cfg.difficulty)
        plan = plan_clip(rng, video, 1200, cfg, budget=3)
        if plan is not None and len(plan.referred) >= min_referred:
            return plan
    raise RuntimeError("no clip with enough referred people found")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def key_frame_with_sentences(plan: ClipPlan, scale: int = 4) -> Image.Image:
    """The key frame upscaled, each referred person's box outlined in a colour and its first
    sentence (plus labels) written below in the same colour."""
    scene = plan.scene
    frame = render_frame(scene, KEY_T, 45, draw_background(scene))
    img = Image.fromarray(frame).resize((scene.width * scale, scene.height * scale), Image.NEAREST)
    from ...classes import name_of  # noqa: PLC0415

    font = _font(14)
    lines = []
    draw = ImageDraw.Draw(img)
    for k, (i, texts, _) in enumerate(plan.referred):
        colour = _PALETTE[k % len(_PALETTE)]
        x1, y1, x2, y2 = (v * scale for v in plan.geometry.person_boxes[i])
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        labels = ", ".join(name_of(j).split(" (")[0] for j in scene.actors[i].spec.labels)
        lines.append((colour, f'"{texts[0]}"  ->  {labels}'))
    pad = 8
    panel = Image.new("RGB", (img.width, pad * 2 + 20 * len(lines)), (250, 250, 248))
    pd = ImageDraw.Draw(panel)
    for k, (colour, text) in enumerate(lines):
        pd.rectangle((pad, pad + 20 * k + 3, pad + 10, pad + 20 * k + 13), fill=colour)
        pd.text((pad + 18, pad + 20 * k), text, fill=(20, 20, 20), font=font)
    out = Image.new("RGB", (img.width, img.height + panel.height), (255, 255, 255))
    out.paste(img, (0, 0))
    out.paste(panel, (0, img.height))
    return out


def clip_strip(plan: ClipPlan, num_frames: int = 8, scale: int = 2) -> Image.Image:
    """The clip's frames (the files an instance reads) side by side."""
    scene = plan.scene
    bg = draw_background(scene)
    jobs = frame_jobs(scene.timestamp, num_frames)
    start = jobs[0][0]
    frames = [render_frame(scene, t, n - start, bg) for n, t in jobs]
    strip = np.concatenate(frames, axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)


def save_example(path: str | Path, seed: int = 4, scale: int = 4, min_referred: int = 3) -> Path:
    """Write the README example (``docs/img/synth_example.png`` is seed 4): a key frame with
    its referring expressions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key_frame_with_sentences(example_plan(seed, min_referred=min_referred), scale).save(path)
    return path
