"""docs/performance.md: each benchmark owns one section between its own start/end markers."""

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
DOCS_HEADER = "# Performance\n\nMeasurements on the project's 2-core CPU machine.\n"


def write_section(block: str, start: str, end: str, path: Path = DOCS) -> None:
    """Replace the text from `start` to `end` in `path` with `block` (which holds both markers),
    appending it when the markers are absent and creating the file when it is missing."""
    text = path.read_text() if path.is_file() else DOCS_HEADER
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
