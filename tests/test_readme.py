"""README's quickstart commands are the ones CI runs, and its Python snippets run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n# 2\. [^\n]*\n([^\n]+)\n```", readme)
    assert len(commands) == 1
    assert commands[0] in (ROOT / ".ci" / "run").read_text()


def test_readme_build_and_sample_snippet_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", readme, re.S)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace("num_steps=32", "num_steps=2"), "README", "exec"), {})
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
