"""The Gradio Blocks of Video Diffusion Explorer: Generate, Extend & compare, How it works."""

import gradio as gr

from demo import guidance_handlers, handlers, info, plots, sources, tasks
from demo.runtime import model_dir
from demo.validation import MAX_SEED, MAX_STEPS, SAMPLER_LABELS
from vdm_core.data import EVAL_SEEDS
from vdm_core.defaults import APP_DEFAULTS
from vdm_core.outputs import MAX_FRAMES, SamplingConfig
from vdm_core.unet3d import UNetConfig

TITLE = "Video Diffusion Explorer"
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber")
CSS = """
.pixelated img, .pixelated video { image-rendering: pixelated; }
#status { min-height: 2.5em; }
"""
INTRO = """
# Video Diffusion Explorer
A small, faithful implementation of *Video Diffusion Models* (Ho, Salimans et al., 2022), trained
on a toy world of coloured shapes bouncing around a 32×32 frame. Type a caption like the examples,
watch the model denoise, then see how longer videos are built block by block.
"""
NUM_EXAMPLES = 6
LAST_CLIP_TTL_S = 3600  # a session's last generated clip (<= 400 KB) is kept for an hour
STATE_SESSIONS = 256  # sessions whose state the server keeps at most (pass to launch())
SAMPLERS = list(SAMPLER_LABELS)


def native_frames() -> int:
    """The served model's window (frames per sampler call), from its config.json."""
    config = info.load_config(model_dir()) or UNetConfig()
    return config.num_frames


def example_prompts(count: int = NUM_EXAMPLES) -> list[list[str]]:
    """Captions of held-out world clips (never in the training stream) as example prompts."""
    return [[sources.world_caption(i)] for i in range(count)]


def sampling_controls(config: SamplingConfig, prefix: str = "gen") -> tuple:
    """Guidance weight, sampler and steps controls starting at `config` (ids start with
    prefix)."""
    weight = gr.Slider(0, 8, value=config.w, step=0.25, label="Guidance weight w",
                       info="Classifier-free guidance: 0 = off; higher follows the prompt more")
    default = next(label for label, name in SAMPLER_LABELS.items() if name == config.sampler)
    sampler = gr.Radio(SAMPLERS, value=default, label="Sampler")
    num_steps = gr.Slider(1, MAX_STEPS, value=config.steps, step=1, label="Sampling steps",
                          elem_id=f"{prefix}-steps")
    return weight, sampler, num_steps


def result_video(label: str, height: int = 260, elem_id: str | None = None) -> gr.Video:
    """An output video that plays on its own, loops and keeps its pixels sharp."""
    return gr.Video(label=label, autoplay=True, loop=True, height=height, interactive=False,
                    elem_id=elem_id, elem_classes="pixelated")


def generate_tab(last_clip: gr.State) -> list:
    """The Generate tab; returns its events (for the Stop button)."""
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", lines=2, max_lines=4,
                                placeholder="e.g. a red circle moving up and left "
                                            "(empty = unconditional)",
                                info="Enter: quick result · Generate: watch it denoise")
            gr.Examples(example_prompts(), inputs=[prompt], label="Held-out world captions")
            weight, sampler, steps = sampling_controls(APP_DEFAULTS)
            with gr.Row():
                seed = gr.Number(value=0, step=1, minimum=0, maximum=MAX_SEED,
                                 label="Seed")
                randomize = gr.Checkbox(value=True, label="Randomize seed")
            window = native_frames()
            num_frames = gr.Slider(window, MAX_FRAMES, value=window, step=8,
                                   label="Frames",
                                   info="16 is native; longer videos are extended block by "
                                        "block with reconstruction guidance")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=3):
            video = result_video("Video (8 fps)", height=360, elem_id="gen-video")
            strip = gr.Image(label="Frames (live: the model's current estimate x̂)",
                             interactive=False, format="png", elem_classes="pixelated")
            status = gr.Markdown(elem_id="status", label="Status")
    inputs = [prompt, weight, sampler, steps, seed, randomize, num_frames]
    outputs = [video, strip, seed, status, last_clip]
    events = [
        run.click(handlers.generate_stream, inputs, outputs, api_name="generate_stream"),
        prompt.submit(handlers.generate, inputs, outputs, api_name="generate"),
    ]
    sweep = guidance_sweep_section([prompt, sampler, steps, seed, randomize], seed)
    stop.click(None, cancels=[*events, sweep], api_name="stop_generate",
               api_visibility="private")
    return [*events, sweep]


def guidance_sweep_section(inputs: list, seed: gr.Number):
    """The guidance sweep (paper Table 5 / Fig. 3): the prompt and seed above at w = 0, 1, 2, 4.

    inputs: prompt, sampler, steps, seed, randomize. Returns the sweep's event."""
    weights = ", ".join(f"{w:g}" for w in tasks.SWEEP_WEIGHTS)
    with gr.Accordion(f"Guidance sweep: the same prompt and seed at w = {weights}", open=False):
        gr.Markdown("How much does classifier-free guidance (eq. 6) matter? The prompt, seed, "
                    "sampler and steps above are sampled once per guidance weight, each from "
                    "the same initial noise, and the world's object detector checks each "
                    "video against the prompt (four times the cost of one video).")
        with gr.Row():
            run = gr.Button("Run the guidance sweep", variant="primary", elem_id="sweep-run")
            stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
        image = gr.Image(label="One row per guidance weight w (frames evenly spaced in time)",
                         interactive=False, format="png", elem_classes="pixelated",
                         elem_id="sweep-image")
        verdicts = gr.Markdown(elem_id="sweep-status")
    event = run.click(guidance_handlers.guidance_sweep, inputs, [image, verdicts, seed],
                      api_name="guidance_sweep")
    stop.click(None, cancels=[event], api_name="stop_sweep", api_visibility="private")
    return event


def extend_tab(last_clip: gr.State) -> list:
    """The Extend & compare tab; returns its events (for the Stop button)."""
    window = native_frames()
    with gr.Row():
        with gr.Column(scale=2):
            mode = gr.Radio(list(handlers.MODES), value=handlers.EXTEND,
                            label="Conditioning mode")
            source = gr.Radio(list(sources.SOURCES), value=sources.WORLD,
                              label="Source clip")
            world = gr.Number(value=0, step=1, minimum=0, maximum=len(EVAL_SEEDS) - 1,
                              label=f"World clip (held-out scene 0-{len(EVAL_SEEDS) - 1})")
            upload = gr.Video(label="Uploaded video", sources=["upload"], include_audio=True,
                              visible=False)
            prompt = gr.Textbox(label="Prompt", value=sources.world_caption(0), lines=2,
                                info="Filled with the source's caption (an upload's is read from "
                                     "it by the object detector); empty = unconditional")
            num_frames = gr.Slider(window, MAX_FRAMES, value=2 * window, step=8,
                                   label="Frames",
                                   info=f"Long video: {handlers.LONG_VIDEO_FRAMES} by default, "
                                        f"up to {MAX_FRAMES}")
            k = gr.Slider(1, window - 1, value=APP_DEFAULTS.k, step=1,
                          label="Conditioning frames k",
                          info="Frames given at the start, and the context of each new block")
            factor = gr.Radio(list(handlers.FACTORS), value=list(handlers.FACTORS)[0],
                              label="Super-resolution factor", visible=False)
            every = gr.Slider(2, window - 1, value=4, step=1, visible=False,
                              label="Keep every m-th frame")
            weight, sampler, steps = sampling_controls(handlers.mode_preset(handlers.EXTEND, ""),
                                                       prefix="cmp")
            w_r = gr.Slider(0, 64, value=handlers.mode_preset(handlers.EXTEND, "").w_r, step=0.5,
                            label="Reconstruction guidance weight w_r",
                            info="Eq. 7/8; each mode starts at its tuned value "
                                 "(super-resolution: 4 f²)")
            seed = gr.Number(value=0, step=1, minimum=0, maximum=MAX_SEED,
                             label="Seed (both methods use it)")
            with gr.Row():
                run_extend = gr.Button("Extend & compare", variant="primary")
                run_sr = gr.Button("Super-resolve & compare", variant="primary", visible=False)
                run_interp = gr.Button("Interpolate & compare", variant="primary",
                                       visible=False)
                run_long = gr.Button("Long video & compare", variant="primary", visible=False,
                                     elem_id="long-run")
                stop = gr.Button("Stop", variant="stop")
            run_field = gr.Button("Show the guidance field", elem_id="field-run")
        with gr.Column(scale=3):
            with gr.Row():
                given = result_video("Given to the model")
                truth = result_video("Ground truth")
            with gr.Row():
                left = result_video("Replacement")
                right = result_video("Reconstruction guidance")
            plot = gr.Plot(label="Per-frame change and error", format="png", show_label=False)
            status = gr.Markdown(label="Status")
            with gr.Accordion("Guidance field: where is the model pushed, and how hard?",
                              open=True):
                field_image = gr.Image(
                    label="Known frames, then per noise level: estimate x̂ (top) and the size "
                          "of the reconstruction-guidance correction (bottom)",
                    interactive=False, format="png", elem_classes="pixelated",
                    elem_id="field-image")
                field_caption = gr.Markdown(elem_id="field-caption")
    shared = [source, world, upload, last_clip, num_frames]
    tail = [prompt, weight, w_r, steps, sampler, seed]
    outputs = [given, left, right, truth, plot, status]
    events = [
        run_extend.click(handlers.compare, [*shared, k, *tail], outputs, api_name="compare"),
        run_sr.click(handlers.super_resolve, [*shared, factor, *tail], outputs,
                     api_name="super_resolve"),
        run_interp.click(handlers.interpolate, [*shared, every, k, *tail], outputs,
                         api_name="interpolate"),
        run_long.click(handlers.long_video, [*shared, k, *tail], outputs,
                       api_name="long_video"),
        run_field.click(guidance_handlers.guidance_field,
                        [mode, source, world, upload, last_clip, k, factor, *tail],
                        [field_image, field_caption], api_name="guidance_field"),
    ]
    stop.click(None, cancels=events, api_name="stop_compare", api_visibility="private")
    controls = [k, factor, every, w_r, run_extend, run_sr, run_interp, run_long, run_field,
                left, right, weight, steps]
    gr.on([mode.change, factor.change], handlers.mode_controls, [mode, factor], controls,
          api_name="mode_controls", api_visibility="private", queue=False)
    mode.change(lambda m: handlers.mode_frames(m, 2 * window), [mode], [num_frames],
                api_name="mode_frames", api_visibility="private", queue=False)
    gr.on([source.change, world.change], handlers.source_caption, [source, world, last_clip],
          [prompt], api_name="source_caption", queue=False)
    upload.change(handlers.upload_caption, [upload], [prompt], api_name="upload_caption",
                  queue=False)
    source.change(handlers.source_controls, [source], [world, upload],
                  api_name="source_controls", api_visibility="private", queue=False)
    return events


def how_it_works_tab() -> None:
    """Explanation, schedule and attention-mask plots, architecture and model card."""
    gr.Markdown(info.EXPLANATION)
    with gr.Row():
        gr.Plot(plots.schedule_figure(), label="Noise schedule", format="png", scale=2,
                show_label=False)
        gr.Plot(plots.attention_mask_figure(), label="Temporal attention mask", format="png",
                scale=1, show_label=False)
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Architecture\n" + info.architecture_markdown(model_dir()))
        with gr.Column():
            with gr.Accordion("Model card", open=False):
                gr.Markdown(info.model_card_markdown(model_dir()))


def build_demo() -> gr.Blocks:
    """The app's Blocks, with the queue configured (one job at a time, 16 waiting at most).

    Served files older than an hour are deleted from Gradio's cache every 10 minutes.
    """
    with gr.Blocks(title=TITLE, delete_cache=(600, 3600)) as demo:
        gr.Markdown(INTRO)
        last_clip = gr.State(None, time_to_live=LAST_CLIP_TTL_S)
        with gr.Tabs():
            with gr.Tab("Generate"):
                generate_tab(last_clip)
            with gr.Tab("Extend & compare"):
                extend_tab(last_clip)
            with gr.Tab("How it works"):
                how_it_works_tab()
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo
