"""scripts/ship_check.py: paired held-out loss of a candidate model against a baseline."""

import dataclasses

import torch
from conftest import load_script

from vdm_core.unet3d import UNetConfig

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                  text_heads=2, image_size=16, num_frames=8)


def rows(text: str) -> list[list[str]]:
    return [line.split(" | ") for line in text.splitlines() if line.startswith("| ")][1:]


def test_a_model_against_itself_differs_by_exactly_zero_and_a_worse_one_is_flagged(
        tmp_path, randomized_unet):
    script = load_script("ship_check")
    baseline = randomized_unet(TINY)
    baseline.save_pretrained(tmp_path / "base")
    out = tmp_path / "check.md"
    script.main([str(tmp_path / "base"), "--baseline", str(tmp_path / "base"), "--clips", "3",
                 "--threads", "1", "--out", str(out)])
    same = rows(out.read_text())
    assert len(same) == 2 * len(script.KINDS)
    assert all(cell.startswith("0.0000") for row in same for cell in row[3:])
    assert "Lower with a separated interval in 0 of 6 rows" in out.read_text()
    assert "Frameskip input" not in out.read_text()  # the baseline has no such input
    base = tmp_path / "base"  # the line that reproduces the run names every choice, threads too
    line = f"scripts/ship_check.py {base} --baseline {base} --clips 3 --threads 1 --out {out}`"
    assert line in out.read_text()
    # A frameskip-conditioned candidate with the same weights plus noise on the output conv.
    candidate = randomized_unet(dataclasses.replace(TINY, frameskip_conditioning=True))
    candidate.load_state_dict(baseline.state_dict(), strict=False)
    with torch.no_grad():
        for name, p in candidate.named_parameters():
            if name == "conv_out.weight":
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    candidate.save_pretrained(tmp_path / "cand")
    script.main([str(tmp_path / "cand"), "--baseline", str(tmp_path / "base"), "--clips", "3",
                 "--threads", "1", "--out", str(out)])
    worse = rows(out.read_text())
    means = [float(row[3].split()[0]) for row in worse]
    assert all(m > 0 for m in means), means
    used = out.read_text().split("Frameskip input: ")[1]
    assert not used.split("frameskip 1): ")[1].startswith("0.0000 [")
    with torch.no_grad():
        candidate.frameskip_mlp[-1].weight.zero_()
        candidate.frameskip_mlp[-1].bias.zero_()
    candidate.save_pretrained(tmp_path / "deaf")
    script.main([str(tmp_path / "deaf"), "--baseline", str(tmp_path / "base"), "--clips", "3",
                 "--threads", "1", "--out", str(out)])
    ignored = out.read_text().split("Frameskip input: ")[1]
    zeros = "/".join(["0.0000"] * 5)
    assert f"frameskip 1): 0.0000 [0.0000, 0.0000] (by log-SNR -6/-3/0/3/6: {zeros}); " in ignored
    assert f"(start 0): 0.0000 [0.0000, 0.0000] (by log-SNR -6/-3/0/3/6: {zeros})." in ignored
