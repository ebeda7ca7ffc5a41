"""End-to-end numbers of the Gradio app: ready time, a 16-frame clip with CFG, peak memory.

    python bench/bench_app.py [--repeats N] [--steps 24] [--write-docs]

Spawns `python app.py` on a free port and measures

- ready time: from the spawn until the page answers HTTP 200 (the model then loads in the
  background) and until the first 1-step /generate call returns (model loaded);
- a 16-frame clip at the app's defaults (`APP_DEFAULTS`: 24 ancestral steps, w = 2, so every
  step is a guided pair of denoiser calls) through `gradio_client` /generate: the median of N calls,
  end to end (queue, sampling, H.264 encoding, file transfer);
- the server's peak resident memory (VmHWM of the app process).

`--write-docs` replaces the section between the app markers of docs/performance.md.
"""

import argparse
import datetime
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from perf_docs import DOCS, write_section

from demo.runtime import num_threads
from vdm_core.defaults import APP_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]

START, END = "<!-- app:start -->", "<!-- app:end -->"
TARGET_CLIP_S = 5.0
TARGET_RSS_GB = 2.0
PROMPT = "a red circle moving up and left"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 300.0) -> None:
    """Poll url until it answers 200, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size (VmHWM) of a running process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def spawn_app(port: int) -> subprocess.Popen:
    """`python app.py` on port, its output discarded."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def generate(client, steps: int, seed: int) -> tuple[float, float]:
    """Seconds for one /generate call (16 frames, w = 2, ancestral), end to end and of
    sampling alone (the time the app reports at the end of its status line)."""
    start = time.perf_counter()
    *_, status = client.predict(PROMPT, 2.0, "Ancestral", steps, seed, False, 16,
                                api_name="/generate")
    total = time.perf_counter() - start
    return total, float(re.search(r"([\d.]+) s$", status.strip()).group(1))


def measure(repeats: int, steps: int) -> dict:
    """Spawn the app and take every measurement; the app is stopped afterwards."""
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    process = spawn_app(port)
    try:
        wait_for_http(url)
        page_s = time.perf_counter() - start
        client = Client(url, verbose=False)
        generate(client, 1, 0)
        model_s = time.perf_counter() - start
        generate(client, steps, 0)  # warm-up at full length
        timings = [generate(client, steps, seed) for seed in range(1, repeats + 1)]
        return {"page_s": page_s, "model_s": model_s, "clips": [t for t, _ in timings],
                "sampling": [s for _, s in timings],
                "rss": peak_rss_bytes(process.pid)}
    finally:
        process.terminate()
        process.wait(timeout=30)


def report(result: dict, steps: int, load: tuple[float, float]) -> str:
    """The markdown section for docs/performance.md, between the app markers."""
    clip = statistics.median(result["clips"])
    rss_gb = result["rss"] / 2**30
    verdict = "meets" if clip <= TARGET_CLIP_S else "misses"
    rss_verdict = "meets" if rss_gb <= TARGET_RSS_GB else "misses"
    today = datetime.date.today().isoformat()
    threads = num_threads()
    return "\n".join([
        START,
        "## App (Gradio)",
        "",
        f"`python bench/bench_app.py --write-docs` on {today}, {platform.machine()} with "
        f"{os.cpu_count()} CPU cores; load average {load[0]:.1f} before, {load[1]:.1f} after "
        "(other work on the machine slows every number down).",
        "",
        "| Measure | Value | Target |",
        "|---|---|---|",
        f"| `python app.py` until the page answers | {result['page_s']:.1f} s | |",
        f"| ... until the first 1-step clip (model loaded) | {result['model_s']:.1f} s | |",
        f"| 16-frame clip, {steps} ancestral steps, w = 2, end to end (median of "
        f"{len(result['clips'])}; min {min(result['clips']):.1f}, max {max(result['clips']):.1f})"
        f" | {clip:.2f} s | <= {TARGET_CLIP_S:.0f} s ({verdict}) |",
        f"| ... of which sampling (the pipeline call) | {statistics.median(result['sampling']):.2f}"
        " s | |",
        f"| Peak RSS of the app process | {rss_gb:.2f} GB | <= {TARGET_RSS_GB:.0f} GB "
        f"({rss_verdict}) |",
        "",
        f"Each guided step runs the denoiser on the conditional and unconditional inputs; the "
        f"clip time includes the queue, H.264 encoding and the file transfer to the client. The "
        f"app runs torch on {threads} threads.",
        END,
    ])


def main(argv: list[str] | None = None) -> None:
    """Measure, print the report and optionally write it into docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed clips (median)")
    parser.add_argument("--steps", type=int, default=APP_DEFAULTS.steps,
                        help="sampling steps per clip (default: the app's)")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the results into {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    result = measure(args.repeats, args.steps)
    section = report(result, args.steps, (load_before, os.getloadavg()[0]))
    print(section)
    if args.write_docs:
        write_section(section, START, END)
        print(f"\nwrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
