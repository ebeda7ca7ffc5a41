"""Training: exact resume after SIGKILL, DDP on CPU with torchrun, training on a video folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm_core.train import TrainConfig, lr_at, parse_args

TINY = ["--batch-size", "2", "--base-channels", "16", "--channel-mults", "1,2",
        "--attn-resolutions", "4", "--head-dim", "8", "--image-size", "8", "--num-frames", "4",
        "--sample-every", "0", "--threads", "1", "--log-every", "1"]
ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def run_train(out_dir: Path, steps: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vdm_core.train", "--out-dir", str(out_dir), "--steps",
           str(steps), *TINY, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def checkpoint_step(out_dir: Path) -> int:
    path = out_dir / "checkpoint.pt"
    if not path.exists():
        return 0
    return torch.load(path, map_location="cpu", weights_only=False)["step"]


def final_state(out_dir: Path) -> dict:
    ckpt = torch.load(out_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    return {"model": ckpt["model"], "ema": ckpt["ema"], "step": ckpt["step"]}


@pytest.mark.slow
def test_sigkill_and_resume_gives_identical_weights(tmp_path):
    steps = 24
    straight = run_train(tmp_path / "straight", steps, "--ckpt-every", "1")
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    killed_dir = tmp_path / "killed"
    proc = run_train(killed_dir, steps, "--ckpt-every", "1")
    deadline = time.time() + 300
    while checkpoint_step(killed_dir) < 3 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    reached = checkpoint_step(killed_dir)
    assert 3 <= reached < steps, "the run must be killed part-way"

    resumed = run_train(killed_dir, steps, "--ckpt-every", "1")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"resumed from {killed_dir / 'checkpoint.pt'} at step {reached}" in out

    a, b = final_state(tmp_path / "straight"), final_state(killed_dir)
    assert a["step"] == b["step"] == steps
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    log = [json.loads(ln) for ln in (killed_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, steps + 1))


def test_sigterm_saves_a_checkpoint(tmp_path):
    proc = run_train(tmp_path, 10_000, "--ckpt-minutes", "1000")
    deadline = time.time() + 120
    log = tmp_path / "log.jsonl"
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    assert "checkpoint saved" in out
    assert checkpoint_step(tmp_path) >= 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent
                    / "torchrun").exists(), reason="torchrun not installed")
def test_torchrun_ddp_on_cpu_keeps_ranks_identical(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    verdict = tmp_path / "verdict.json"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "ddp_worker.py"),
         str(tmp_path / "run"), str(verdict)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(verdict.read_text())
    assert result["world_size"] == 2
    assert result["identical"]
    assert result["moved"] > 0


@pytest.mark.slow
def test_data_workers_train_the_same_weights_and_resume_exactly(tmp_path):
    steps = 6
    inline = run_train(tmp_path / "inline", steps)
    assert inline.wait(timeout=300) == 0, inline.stdout.read()
    first = run_train(tmp_path / "workers", steps // 2, "--workers", "2")
    assert first.wait(timeout=300) == 0, first.stdout.read()
    resumed = run_train(tmp_path / "workers", steps, "--workers", "2")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"at step {steps // 2}" in out

    a, b = final_state(tmp_path / "inline"), final_state(tmp_path / "workers")
    assert a["step"] == b["step"] == steps
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=1e-6)
        torch.testing.assert_close(b["ema"][key], a["ema"][key], rtol=0, atol=1e-6)


def test_group_sigterm_with_data_workers_saves_a_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "vdm_core.train", "--out-dir", str(tmp_path), "--steps", "10000",
           *TINY, "--workers", "2", "--ckpt-minutes", "1000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    log = tmp_path / "log.jsonl"
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # as `timeout` and Ctrl-C do: workers get it too
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    assert "checkpoint saved" in out
    assert checkpoint_step(tmp_path) >= 2


def test_init_from_keeps_the_record_of_earlier_phases(tmp_path):
    exports = [tmp_path / f"export{i}" for i in range(3)]
    for i, steps in enumerate((3, 2, 1)):
        init = ["--init-from", str(exports[i - 1])] if i else []
        proc = run_train(tmp_path / f"run{i}", steps, "--export-dir", str(exports[i]), *init)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out

    state = json.loads((exports[2] / "training_state.json").read_text())
    assert state["step"] == 1
    assert [phase["step"] for phase in state["history"]] == [3, 2]
    assert state["history"][1]["train_config"]["init_from"] == str(exports[0])
    assert all("CPU" in phase["hardware"] for phase in [*state["history"], state])
    earlier = [json.loads(ln) for ln in
               (exports[2] / "training_log_earlier.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in earlier] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]


def test_workers_refuse_a_video_folder(tmp_path):
    proc = run_train(tmp_path / "run", 1, "--data", str(tmp_path), "--image-frames", "0",
                     "--workers", "2")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "--workers renders the procedural world" in out


def test_train_on_a_video_folder(tmp_path):
    from vdm_core.video_io import write_mp4

    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = np.zeros((12, 16, 16, 3), np.uint8)  # (T, H, W, 3)
        for t in range(12):
            frames[t, 4:10, t:t + 4] = rng.integers(80, 255, 3)
        write_mp4(frames, folder / f"clip{i}.mp4", min_size=16)
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "captions.csv").write_text("file,caption\nclip0.mp4,a bar moving right\n")
    proc = run_train(tmp_path / "run", 2, "--data", str(folder), "--image-frames", "0")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "broken.mp4" in out
    assert checkpoint_step(tmp_path / "run") == 2


def test_folder_data_refuses_image_frames(tmp_path):
    proc = run_train(tmp_path / "run", 1, "--data", str(tmp_path), "--image-frames", "2")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "--image-frames needs the procedural world" in out


def test_cli_maps_to_configs_and_warmup():
    cfg, model_cfg = parse_args(["--steps", "5", "--no-bf16", "--channel-mults", "1,2",
                                 "--num-frames", "8"])
    assert cfg.steps == 5 and cfg.bf16 is False
    assert model_cfg.channel_mults == (1, 2) and model_cfg.num_frames == 8
    warm = TrainConfig(lr=1e-3, warmup_steps=10)
    assert lr_at(0, warm) == pytest.approx(1e-4)
    assert lr_at(9, warm) == pytest.approx(1e-3) == lr_at(500, warm)
