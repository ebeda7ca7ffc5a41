"""The guidance field (vdm_core.guidance_field): recording reconstruction guidance changes
nothing, and what it records is eq. 7 / eq. 8's correction."""

import pytest
import torch
import torch.nn.functional as F

from vdm_core.defaults import default_config, lowres_w_r
from vdm_core.guidance import Observation, ReconstructionGuidance
from vdm_core.guidance_field import RecordingGuidance, guidance_field, snapshot_steps
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.samplers import sample
from vdm_core.schedule import alpha_sigma
from vdm_core.unet3d import UNetConfig

UNET = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(4,), head_dim=8,
                  image_size=8, num_frames=6, text_heads=2)
PIPE_UNET = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                       image_size=16, num_frames=8, text_heads=2)


@pytest.fixture(scope="module")
def model(randomized_unet):
    return randomized_unet(UNET).requires_grad_(False)


@pytest.fixture(scope="module")
def pipe(randomized_unet):
    return VideoDiffusionPipeline(randomized_unet(PIPE_UNET))


def _observations(gen: torch.Generator) -> dict[str, Observation]:
    """Known frames 0 and 1 of a 6-frame window (eq. 7) and a 4x4 view of 8x8 frames (eq. 8)."""
    known = torch.rand(2, 3, 2, 8, 8, generator=gen) * 2 - 1
    low = torch.rand(2, 3, 6, 4, 4, generator=gen) * 2 - 1
    return {"frames": Observation.known_frames([0, 1], known),
            "lowres": Observation.low_resolution(low)}


@pytest.mark.parametrize("kind", ["frames", "lowres"])
@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "pc"])
def test_recording_samples_the_same_video_bit_for_bit(model, kind, sampler):
    obs = _observations(torch.Generator().manual_seed(1))[kind]
    z = torch.randn(2, 3, 6, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = ReconstructionGuidance(obs, 3.0)
    recorder = RecordingGuidance(plain)
    expected = sample(sampler, model, z, 3, generator=torch.Generator().manual_seed(3),
                      strategy=plain)
    got = sample(sampler, model, z, 3, generator=torch.Generator().manual_seed(3),
                 strategy=recorder)
    assert torch.equal(got, expected)
    assert len(recorder.records) == recorder.calls == (5 if sampler == "pc" else 3)
    assert all(r.x_hat.shape == r.correction.shape == z.shape for r in recorder.records)


def _observed(obs: Observation, x: torch.Tensor) -> torch.Tensor:
    """x^a of x, written out independently: the known frames, or 2x2 block means."""
    if obs.is_lowres:
        return F.avg_pool3d(x, (1, 2, 2))
    return x[:, :, obs.frame_indices]


@pytest.mark.parametrize("kind", ["frames", "lowres"])
def test_recorded_correction_is_eq7_eq8_by_autograd(model, kind):
    """At one step of a real run, the record is -(w_r alpha_t / 2) grad_z ||x^a - x_hat^a||^2
    and the guided estimate is x_hat + correction (x^a itself at known frames)."""
    w_r = 4.0
    obs = _observations(torch.Generator().manual_seed(4))[kind]
    inputs = []

    def denoise(z, logsnr):
        inputs.append((z.detach().clone(), logsnr.clone()))
        return model(z, logsnr)

    recorder = RecordingGuidance(ReconstructionGuidance(obs, w_r))
    z = torch.randn(2, 3, 6, 8, 8, generator=torch.Generator().manual_seed(5))
    sample("ancestral", denoise, z, 4, generator=torch.Generator().manual_seed(6),
           strategy=recorder)
    record = recorder.records[2]
    z_t, logsnr = inputs[2]
    assert record.logsnr == pytest.approx(logsnr[0].item())
    z_in = z_t.clone().requires_grad_(True)
    x_hat = model(z_in, logsnr)
    (grad,) = torch.autograd.grad((obs.target - _observed(obs, x_hat)).square().sum(), z_in)
    alpha = alpha_sigma(logsnr)[0].reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close(record.x_hat, x_hat.detach())
    torch.testing.assert_close(record.correction, -(w_r * alpha / 2) * grad)
    assert record.correction.abs().max() > 0
    guided = recorder.guidance.guided(record.x_hat, record.correction)
    if kind == "frames":
        torch.testing.assert_close(guided[:, :, [0, 1]], obs.frames)
        torch.testing.assert_close(guided[:, :, 2:], (record.x_hat + record.correction)[:, :, 2:])
    else:
        torch.testing.assert_close(guided, record.x_hat + record.correction)


def test_snapshot_steps_spread_over_the_run():
    assert snapshot_steps(24) == [2, 8, 14, 20]  # 10%, 35%, 60%, 85%
    assert snapshot_steps(4) == [0, 1, 2, 3]
    assert snapshot_steps(2) == [0, 1] and snapshot_steps(1) == [0]
    assert snapshot_steps(100, levels=2) == [20, 70]
    with pytest.raises(ValueError, match="levels"):
        snapshot_steps(10, levels=0)


def test_guidance_field_keeps_the_sample_and_orders_the_snapshots(pipe):
    frames = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    obs = Observation.known_frames([0, 1, 2], frames)
    config = default_config("extend", steps=8, w=1.0, w_r=6.0, sampler="ancestral")
    seen = []
    result = guidance_field(pipe, obs, "a red circle moving up",
                            config.seeded(0).with_callback(lambda step: seen.append(step.step)))
    same = config.seeded(0)  # one generator: the initial noise, then every step's noise
    z = pipe.initial_noise(1, 8, same.generator)
    expected = pipe.sample(["a red circle moving up"], z, same, ReconstructionGuidance(obs, 6.0))
    assert torch.equal(result.sample, expected)
    assert seen == list(range(8)) and result.w_r == 6.0 and result.known == (0, 1, 2)
    shots = result.snapshots
    assert [s.step for s in shots] == snapshot_steps(8) == [0, 2, 4, 6]
    assert all(a.t > b.t and a.logsnr < b.logsnr for a, b in zip(shots, shots[1:], strict=False))
    for shot in shots:
        magnitude = shot.magnitude()  # (B, T, H, W)
        assert magnitude.shape == (1, 8, 16, 16)
        assert magnitude[:, :3].eq(0).all() and magnitude[:, 3:].gt(0).any()
        torch.testing.assert_close(magnitude, shot.applied().norm(dim=1))


def test_guidance_field_super_resolution_and_w_r_zero(pipe):
    low = torch.rand(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(8)) * 2 - 1
    obs = Observation.low_resolution(low)
    config = default_config("super_resolve", steps=4, sampler="ddim")
    result = guidance_field(pipe, obs, "", config.seeded(1))
    assert result.w_r == lowres_w_r(2) and result.known == ()
    assert result.sample.shape == (1, 3, 5, 16, 16)
    assert len(result.snapshots) == 4
    assert all(s.magnitude().gt(0).any() for s in result.snapshots)
    off = guidance_field(pipe, obs, "", default_config("super_resolve", steps=4, w_r=0.0)
                         .seeded(1))
    assert all(s.magnitude().eq(0).all() for s in off.snapshots)


def test_guidance_field_checks_the_window(pipe):
    obs = Observation.known_frames([0, 9], torch.zeros(1, 3, 2, 16, 16))
    with pytest.raises(ValueError, match="outside a window of 8 frames"):
        guidance_field(pipe, obs, config=default_config("extend", steps=1))
    low = Observation.low_resolution(torch.zeros(1, 3, 4, 8, 8))
    with pytest.raises(ValueError, match="fixes the window"):
        guidance_field(pipe, low, config=default_config("extend", steps=1), num_frames=8)
