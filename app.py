"""Hugging Face Spaces entry point: build the Video Diffusion Explorer app and serve it.

    python app.py            # http://127.0.0.1:7860 (0.0.0.0 on Spaces)

Environment: GRADIO_SERVER_PORT / GRADIO_SERVER_NAME override the port / host, VDM_MODEL_DIR the
model folder (default assets/model), VDM_KEYFRAME_MODEL_DIR the long-video cascade's keyframe
model (default assets/keyframe_model with the shipped model), VDM_NUM_THREADS the torch threads.
"""

import os

import gradio as gr

from demo import CSS, STATE_SESSIONS, THEME, build_demo
from demo.runtime import configure_threads, warm_up
from vdm_core.memory import retain_freed_memory
from vdm_core.video_io import MAX_BYTES

DEFAULT_PORT = 7860


def server_name() -> str:
    """0.0.0.0 on Hugging Face Spaces (or when GRADIO_SERVER_NAME says so), else 127.0.0.1."""
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    return "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"


def server_port() -> int:
    """$GRADIO_SERVER_PORT, else 7860."""
    return int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)


def launch_app(port: int | None = None, host: str | None = None,
               prevent_thread_lock: bool = False, quiet: bool = False) -> gr.Blocks:
    """Build the app, start loading the model in the background and serve it.

    With prevent_thread_lock=True this returns once the server is up (tests, benchmarks);
    otherwise it serves until interrupted. Uploads over the video reader's size limit are
    refused by the server, and per-session state is bounded.
    """
    retain_freed_memory()  # reconstruction-guidance steps reuse their memory (memory.py)
    configure_threads()
    demo = build_demo()
    warm_up()
    demo.launch(server_name=host or server_name(), server_port=port or server_port(),
                prevent_thread_lock=prevent_thread_lock, quiet=quiet, theme=THEME, css=CSS,
                max_file_size=MAX_BYTES, state_session_capacity=STATE_SESSIONS)
    return demo


if __name__ == "__main__":
    launch_app()
