"""README's quickstart commands are the ones CI runs, and its Python snippets run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n# 2\. [^\n]*\n([^\n]+)\n```", readme)
    assert len(commands) == 1
    assert commands[0] in (ROOT / ".ci" / "run").read_text()


def _snippet(containing: str) -> str:
    """The README's Python snippet that contains the given text."""
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (found,) = [s for s in snippets if containing in s]
    return found


def test_readme_pipeline_snippets_run():
    namespace: dict = {}
    quick = _snippet("from_pretrained").replace("num_inference_steps=32", "num_inference_steps=1")
    exec(compile(quick, "README", "exec"), namespace)
    assert namespace["video"].frames.shape == (16, 32, 32, 3)
    tasks = _snippet("pipe.extend").replace("steps=24", "steps=1")
    exec(compile(tasks, "README", "exec"), namespace)
    assert namespace["longer"].frames.shape == (64, 32, 32, 3)
    assert namespace["sharp"].frames.shape == (16, 32, 32, 3)
    assert set(namespace["result"].scores) == {"replacement", "reconstruction"}


def test_readme_build_and_sample_snippet_runs(tmp_path, monkeypatch):
    snippet = _snippet("save_pretrained")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace("num_steps=32", "num_steps=2"), "README", "exec"), {})
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
