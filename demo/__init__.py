"""Video Diffusion Explorer: the Gradio app around `vdm_core` (see `app.py` to launch it)."""

from demo.layout import CSS, STATE_SESSIONS, THEME, TITLE, build_demo

__all__ = ["CSS", "STATE_SESSIONS", "THEME", "TITLE", "build_demo"]
