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
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
             if line.startswith("| ")]
    rows = [r for r in table if r[0] in "1248"]
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
    # the split of the 4-frame prediction: w_r around the library's default, then the caption
    # read back from the given frames; 'found only' has no value where nothing was found, the
    # scored error always has one, and the shares and the speed ratio are numbers (nan: none)
    causes = [r for r in table if r[0] in ("empty", "read back")]
    assert [(r[0], r[1]) for r in causes] == [("empty", "5"), ("empty", "**20** (default)"),
                                              ("empty", "80"), ("read back", "**20** (default)")]
    for row in causes:
        assert len(row) == 8
        assert row[2] == "n/a" or float(row[2].split()[0]) >= 0
        assert float(row[3].split()[0]) >= 0
        assert 0 <= float(row[4]) <= 1
        [float(cell) for cell in row[5:]]
