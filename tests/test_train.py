"""Training: exact resume after SIGKILL, DDP on CPU with torchrun, training on a video folder."""

import copy
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

from vdm_core.grow import break_time_symmetry, load_init, make_optimizer
from vdm_core.records import export_from_checkpoint
from vdm_core.temporal_attention import TemporalAttention
from vdm_core.train import TrainConfig, check_config, lr_at, parse_args, parse_frameskips
from vdm_core.unet3d import UNet3D

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


def straight_and_resumed(tmp_path: Path, steps: int, split_at: int, extra: list[str]) -> None:
    """Train `steps` steps in tmp_path / "straight", and in tmp_path / "split" stop at
    `split_at` and resume to `steps`: model and EMA must end bit for bit the same."""
    straight = run_train(tmp_path / "straight", steps, *extra)
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    first = run_train(tmp_path / "split", split_at, *extra)
    assert first.wait(timeout=300) == 0, first.stdout.read()
    resumed = run_train(tmp_path / "split", steps, *extra)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"at step {split_at}" in out
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key


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
    for attempt in range(2):
        verdict = tmp_path / f"verdict{attempt}.json"
        proc = subprocess.run(
            [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "ddp_worker.py"),
             str(tmp_path / f"run{attempt}"), str(verdict)],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        output = proc.stdout + proc.stderr
        # gloo's teardown (torch 2.13, CPU) rarely aborts one rank after both have passed the
        # final barrier: seen once in CI and 0 times in 40 local runs. Only that abort, after the
        # verdict was written, earns one second run; any other failure fails at once.
        teardown_abort = (proc.returncode != 0 and verdict.exists()
                          and "terminate called without an active exception" in output)
        if not teardown_abort:
            break
    assert proc.returncode == 0, output[-6000:]
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


def test_export_only_rewrites_the_export_from_the_checkpoint(tmp_path):
    proc = run_train(tmp_path / "run", 2, "--export-dir", str(tmp_path / "live"))
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    again = run_train(tmp_path / "run", 2, "--export-dir", str(tmp_path / "again"),
                      "--export-only")
    assert again.wait(timeout=300) == 0, again.stdout.read()
    live = sorted(p.name for p in (tmp_path / "live").iterdir())
    assert live == ["config.json", "model.safetensors", "training_log.jsonl",
                    "training_state.json"]
    for name in live:
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "live" / name).read_bytes()


def test_export_from_checkpoint_drops_log_lines_past_it(tmp_path):
    proc = run_train(tmp_path / "run", 3, "--ckpt-every", "2", "--export-dir",
                     str(tmp_path / "live"))
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)
    ckpt["step"] = 2  # as if the run had been killed after logging step 3
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    export_from_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "again")
    log = [json.loads(ln) for ln in
           (tmp_path / "again" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert json.loads((tmp_path / "again" / "training_state.json").read_text())["step"] == 2


def test_frameskip_conditioning_from_init_weights_and_exact_resume(tmp_path):
    base = run_train(tmp_path / "base", 1, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    extra = ["--init-from", str(tmp_path / "base_export"), "--frameskip-conditioning",
             "--frameskips", "1,4", "--window-start-max", "8", "--ckpt-every", "1",
             "--added-lr-mult", "10"]
    straight_and_resumed(tmp_path, 3, 1, extra)
    a = final_state(tmp_path / "straight")
    assert any(key.startswith("frameskip_mlp.") for key in a["model"])
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)
    assert ckpt["model_config"]["frameskip_conditioning"]
    assert ckpt["stream"]["frameskips"] == [1, 4]
    assert ckpt["added_params"] and all(n.startswith("frameskip_mlp.")
                                        for n in ckpt["added_params"])
    assert [g["lr_mult"] for g in ckpt["opt"]["param_groups"]] == [1.0, 10.0]


def test_added_lr_mult_scales_the_first_step_of_the_grown_layers_only(tmp_path):
    # 4 steps: the zero-started output conv and the blocks' second convs must move before any
    # gradient reaches the conditioning embedding
    base = run_train(tmp_path / "base", 4, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    grow = ["--init-from", str(tmp_path / "base_export"), "--frameskip-conditioning",
            "--frameskips", "1,4"]
    for mult in ("1", "10"):
        proc = run_train(tmp_path / f"x{mult}", 1, *grow, "--added-lr-mult", mult)
        assert proc.wait(timeout=300) == 0, proc.stdout.read()
    plain, fast = final_state(tmp_path / "x1")["model"], final_state(tmp_path / "x10")["model"]
    moved = 0
    for key in plain:
        if key.startswith("frameskip_mlp.2."):  # zero at the start: a step moves it by -lr * sign
            assert torch.allclose(fast[key], 10 * plain[key], rtol=1e-4, atol=1e-12), key
            moved += int(plain[key].abs().sum() > 0)
        elif not key.startswith("frameskip_mlp."):
            assert torch.equal(fast[key], plain[key]), key
    assert moved == 2  # its weight and bias


def test_added_lr_mult_without_grown_layers_is_refused():
    _, model_cfg = parse_args(TINY)
    with pytest.raises(ValueError, match="--added-lr-mult applies to the layers"):
        make_optimizer(UNet3D(model_cfg), (), 3e-4, 0.0, added_lr_mult=10.0)


def test_cli_frameskip_options():
    cfg, model_cfg = parse_args(["--frameskips", "1,4", "--window-start-max", "48",
                                 "--frameskip-conditioning"])
    assert parse_frameskips(cfg.frameskips) == (1, 4) and cfg.window_start_max == 48
    assert model_cfg.frameskip_conditioning
    cfg, model_cfg = parse_args([])
    assert parse_frameskips(cfg.frameskips) == (1,) and cfg.window_start_max == 0
    assert not model_cfg.frameskip_conditioning
    with pytest.raises(ValueError, match="--frameskips"):
        parse_frameskips("1,0")
    with pytest.raises(ValueError, match="--frame-skip with a video folder"):
        check_config(TrainConfig(data="/videos", frameskips="1,4"))


def test_temporal_resolutions_grow_the_init_weights_into_the_same_function(tmp_path):
    base = run_train(tmp_path / "base", 1, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    cfg, model_cfg = parse_args([*TINY, "--temporal-resolutions", "8", "--init-from",
                                 str(tmp_path / "base_export")])
    assert model_cfg.temporal_resolutions == (8,)
    init, added = load_init(cfg.init_from, model_cfg)
    alone = {f"{name}.{p}" for name, m in init.named_modules()  # not inside an AttentionBlock
             if isinstance(m, TemporalAttention) and not name.endswith(".temporal")
             for p, _ in m.named_parameters()}
    assert alone and set(added) == alone
    saved = UNet3D.from_pretrained(tmp_path / "base_export")
    assert init.config == model_cfg and len(init.state_dict()) > len(saved.state_dict())
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 8, 8, generator=g)  # (B, C, T, H, W)
    logsnr = torch.tensor([-3.0, 2.0])
    with torch.no_grad():
        assert torch.equal(init(z, logsnr), saved(z, logsnr))


def odd_and_even(model: UNet3D) -> tuple[torch.Tensor, torch.Tensor]:
    """Every temporal attention bias at distances +-1..3, split into its odd and even parts."""
    d = torch.arange(1, 4)
    odd, even = [], []
    for m in model.modules():
        if isinstance(m, TemporalAttention):
            odd_part, even_part = m.odd_even(d)
            odd.append(odd_part)
            even.append(even_part)
    return torch.cat(odd), torch.cat(even)


def test_break_time_symmetry_adds_a_seeded_odd_part_once(tmp_path):
    _, model_cfg = parse_args(TINY)
    torch.manual_seed(0)
    model = UNet3D(model_cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TemporalAttention):
                m.rel_bias.weight.normal_()
    odd0, even0 = odd_and_even(model)
    kicked, again, other = (copy.deepcopy(model) for _ in range(3))
    break_time_symmetry(kicked, 0.3, seed=1)
    break_time_symmetry(again, 0.3, seed=1)
    break_time_symmetry(other, 0.3, seed=2)
    odd, even = odd_and_even(kicked)
    torch.testing.assert_close(even, even0)  # attention by distance is left as it was
    assert 0.15 < (odd - odd0).pow(2).mean().sqrt() < 0.6
    torch.testing.assert_close(odd_and_even(again)[0], odd)
    assert not torch.allclose(odd_and_even(other)[0], odd)
    # In training: applied at the start of a run, not again on resume.
    kick = ("--break-time-symmetry", "0.3", "--ckpt-every", "1", "--lr", "1e-6")
    straight = run_train(tmp_path / "straight", 2, *kick)
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    first = run_train(tmp_path / "split", 1, *kick)
    assert first.wait(timeout=300) == 0, first.stdout.read()
    second = run_train(tmp_path / "split", 2, *kick)
    assert second.wait(timeout=300) == 0, second.stdout.read()
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    for part in ("model", "ema"):
        for name in a[part]:
            torch.testing.assert_close(a[part][name], b[part][name], rtol=0, atol=0)
    trained = UNet3D(model_cfg)
    trained.load_state_dict(a["ema"])
    assert odd_and_even(trained)[0].abs().mean() > 0.1


def test_text_pool_lr_mult_scales_the_first_step_of_the_shared_pooling_only(tmp_path):
    base = run_train(tmp_path / "base", 4, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    for mult in ("1", "10"):
        proc = run_train(tmp_path / f"x{mult}", 1, "--init-from", str(tmp_path / "base_export"),
                         "--text-pool-lr-mult", mult, "--heavy-noise-share", "0.5",
                         "--warmup-steps", "1", "--lr", "1e-3")
        assert proc.wait(timeout=300) == 0, proc.stdout.read()
    start = UNet3D.from_pretrained(tmp_path / "base_export").state_dict()
    plain, fast = final_state(tmp_path / "x1")["model"], final_state(tmp_path / "x10")["model"]
    pooled = [key for key in plain if key.startswith("text_pool.")]
    assert pooled
    for key in plain:
        if key not in pooled:
            assert torch.equal(fast[key], plain[key]), key

    def moved(state):  # the pooling's whole first step; Adam's is lr * sign(g) where g >> eps
        return torch.cat([(state[k].double() - start[k].double()).flatten() for k in pooled])

    ratio = float(moved(fast).norm() / moved(plain).norm())
    assert moved(plain).norm() > 0 and abs(ratio - 10.0) < 0.2, ratio
    ckpt = torch.load(tmp_path / "x10" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert [g["lr_mult"] for g in ckpt["opt"]["param_groups"]] == [1.0, 10.0]
    again = run_train(tmp_path / "x10", 2, "--init-from", str(tmp_path / "base_export"))
    out = again.communicate(timeout=300)[0]
    assert again.returncode != 0 and "--text-pool-lr-mult at 1 or not at 1" in out, out
    assert "Traceback" not in out


def test_new_rate_options_are_checked_before_any_work():
    for flag, value, words in (("--heavy-noise-share", "1", "--heavy-noise-share must be in"),
                               ("--text-pool-lr-mult", "0", "--text-pool-lr-mult must be a "
                                                              "positive number"),
                               ("--lr", "nan", "--lr must be a positive number")):
        proc = subprocess.run([sys.executable, "-m", "vdm_core.train", *TINY, flag, value,
                               "--out-dir", "/nonexistent/never-made"], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_freeze_init_trains_the_grown_space_time_attention_alone_and_init_mismatches_are_named(
        tmp_path):
    base = run_train(tmp_path / "base", 1, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    init = ["--init-from", str(tmp_path / "base_export")]
    frozen = run_train(tmp_path / "frozen", 2, *init, "--spacetime-resolutions", "4",
                       "--freeze-init", "--warmup-steps", "1")
    assert frozen.wait(timeout=300) == 0, frozen.stdout.read()
    start = UNet3D.from_pretrained(tmp_path / "base_export", spacetime_resolutions=(4,))
    start_state, after = start.state_dict(), final_state(tmp_path / "frozen")
    ckpt = torch.load(tmp_path / "frozen" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)
    grown = set(ckpt["added_params"])
    assert grown and all(".qkv." in n or ".out." in n or ".norm." in n for n in grown)
    moved = {key for key in start_state
             if not torch.equal(after["model"][key], start_state[key])}
    assert moved and moved <= grown  # only the new layers moved
    assert any(key.endswith(".out.weight") for key in moved)

    refused = run_train(tmp_path / "refused", 1, *init, "--freeze-init")
    out = refused.communicate(timeout=300)[0]
    assert refused.returncode != 0 and "--freeze-init trains only the layers" in out
    assert "Traceback" not in out
    other = run_train(tmp_path / "other", 1, *init, "--base-channels", "8")
    out = other.communicate(timeout=300)[0]
    assert other.returncode != 0 and "Traceback" not in out
    assert "different model config: base_channels is 16 there, 8 here" in out
