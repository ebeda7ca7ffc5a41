"""Pure input checks for the app: every function returns clean values plus notes, or raises.

Nothing here imports Gradio or touches the model, so each rule is unit-testable. A problem the app
can fix (an out-of-range number, an overlong prompt) becomes a note that the handlers show as a
warning; a problem it cannot fix (NaN, an unknown sampler, a mode without its input) raises
`InputError`, whose message the handlers show as a `gr.Error`.
"""

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from vdm_core.defaults import APP_DEFAULTS
from vdm_core.outputs import MAX_FRAMES, SamplingConfig

SAMPLER_LABELS: dict[str, str] = {
    "Ancestral": "ancestral",
    "DDIM": "ddim",
    "Predictor-corrector": "pc",
}
MAX_SEED = 2**31 - 1
MAX_PROMPT_CHARS = 500
MAX_STEPS = 256


class InputError(ValueError):
    """An input the app cannot use; the message is shown to the user as is."""


@dataclass
class Notes:
    """Messages for the user gathered while checking inputs: `warnings` and `infos`."""

    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        """Every message, warnings first."""
        return self.warnings + self.infos


def _as_float(name: str, value: object) -> float:
    """value as a finite float, or an InputError naming the parameter."""
    if value is None or value == "":
        raise InputError(f"{name} is missing: enter a number")
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return number


def clamp_number(name: str, value: object, low: float, high: float, notes: Notes,
                 integer: bool = False) -> float | int:
    """value clamped to [low, high] (a warning in notes when it moved); NaN / inf / text raise.

    With integer=True the value is rounded to the nearest int first.
    """
    number = _as_float(name, value)
    if integer:
        number = round(number)
    clamped = min(max(number, low), high)
    if clamped != number:
        shown = int(clamped) if integer else clamped
        notes.warnings.append(f"{name} must be between {low:g} and {high:g}; "
                              f"{value!r} was changed to {shown:g}")
    return int(clamped) if integer else float(clamped)


def check_prompt(prompt: object, was_truncated: Callable[[str], bool], notes: Notes,
                 max_tokens: int = 32) -> str:
    """The stripped prompt ("" = unconditional, said in notes); overlong prompts are noted.

    was_truncated(prompt) tells whether the text encoder cuts the prompt at max_tokens.
    """
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise InputError(f"the prompt must be text, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    if len(prompt) > MAX_PROMPT_CHARS:
        prompt = prompt[:MAX_PROMPT_CHARS]
        notes.warnings.append(f"The prompt is longer than {MAX_PROMPT_CHARS} characters; "
                              "the rest was dropped.")
    if not prompt:
        notes.infos.append("Empty prompt: sampling unconditionally (no text conditioning, "
                           "so guidance has no effect).")
        return ""
    if was_truncated(prompt):
        notes.warnings.append(f"The prompt is longer than the text encoder's {max_tokens} "
                              "tokens; only its beginning is used.")
    return prompt


def check_sampler(sampler: object) -> str:
    """The pipeline's sampler name for a UI label ("DDIM") or a name ("ddim")."""
    names = {label.lower(): name for label, name in SAMPLER_LABELS.items()}
    names.update({name: name for name in SAMPLER_LABELS.values()})
    key = str(sampler).strip().lower() if sampler is not None else ""
    if key not in names:
        raise InputError(f"unknown sampler {sampler!r}: choose one of "
                         f"{', '.join(SAMPLER_LABELS)}")
    return names[key]


def resolve_seed(seed: object, randomize: bool, notes: Notes,
                 rng: random.Random | None = None) -> int:
    """A fresh random seed when randomize is set, else the checked seed in [0, MAX_SEED]."""
    if randomize:
        return (rng or random.SystemRandom()).randint(0, MAX_SEED)
    return clamp_number("Seed", seed, 0, MAX_SEED, notes, integer=True)


def check_sampling(guidance_weight: object, sampler: object, steps: object, seed: object,
                   randomize: bool, notes: Notes) -> tuple[SamplingConfig, int]:
    """Check w in [0, 8], the sampler, steps in [1, MAX_STEPS] and the seed: the app's
    SamplingConfig (its other fields from defaults.APP_DEFAULTS) seeded with the seed, and
    the seed."""
    config = replace(
        APP_DEFAULTS,
        w=clamp_number("Guidance weight w", guidance_weight, 0.0, 8.0, notes),
        sampler=check_sampler(sampler),
        steps=clamp_number("Steps", steps, 1, MAX_STEPS, notes, integer=True),
    )
    seed = resolve_seed(seed, bool(randomize), notes)
    return config.seeded(seed), seed


def check_num_frames(num_frames: object, notes: Notes, low: int = 1) -> int:
    """A frame count in [low, MAX_FRAMES]."""
    return clamp_number("Frame count", num_frames, low, MAX_FRAMES, notes, integer=True)


def check_conditioning_frames(k: object, num_frames: int, notes: Notes, window: int) -> int:
    """The number k of conditioning frames: at least 1, fewer than the window and num_frames."""
    high = min(window, num_frames) - 1
    if high < 1:
        raise InputError(f"extension needs at least 2 frames, got a frame count of {num_frames}")
    return clamp_number("Conditioning frames k", k, 1, high, notes, integer=True)
