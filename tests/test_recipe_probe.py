"""scripts/recipe_probe.py --diagnose, run end to end on a tiny model."""

from conftest import load_script

from vdm_core.unet3d import UNetConfig

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(16,), head_dim=8,
                  text_heads=2)


def test_diagnosis_writes_the_denoising_and_prediction_tables(tmp_path, randomized_unet):
    model = tmp_path / "model"
    randomized_unet(TINY).save_pretrained(model)
    out = tmp_path / "recipe.md"
    out.write_text("# Recipe\n")
    load_script("recipe_probe").main(["--diagnose", str(model), "--samples", "2", "--steps", "1",
                                      "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# Recipe\n") and "<!-- diagnosis:end -->" in text
    assert f"--diagnose {model} --samples 2 --steps 1" in text
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in "1248"]
    # k = 1 has no velocity to extrapolate; every k has the model and the held frame
    assert [(r[0], r[1]) for r in rows] == [
        (k, m) for k in "1248" for m in ("reconstruction guidance", "hold last frame",
                                         "constant velocity") if k != "1" or m[0] != "c"]
    for k, method, *_, found_only, scored, found in rows:
        if method != "reconstruction guidance":
            # the baselines redraw the given objects, which stay inside these two clips'
            # frames: no object is missing, so scoring a missing one cannot change their error
            assert found == "1.00", (k, method)
            assert scored == found_only, (k, method)
    # the world moves at constant velocity between bounces: the physics baseline from 8 given
    # frames beats holding the last one over the next 8 frames
    held = next(r for r in rows if r[:2] == ["8", "hold last frame"])
    physics = next(r for r in rows if r[:2] == ["8", "constant velocity"])
    assert float(physics[-2].split()[0]) < float(held[-2].split()[0])
