"""The training batches of `vdm-train`: the procedural world or a folder of videos, with each
batch's captions encoded to token states, optionally rendered and encoded ahead of the training
step in background workers (`--workers`)."""

import signal

import torch


def parse_frameskips(text: str) -> tuple[int, ...]:
    """--frameskips "1,4" -> (1, 4); each must be a positive integer."""
    try:
        skips = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        skips = ()
    if not skips or min(skips) < 1:
        raise ValueError(f"--frameskips must be positive integers like 1,4, got {text!r}")
    return skips


def make_stream(cfg, image_size: int, rank: int):
    """The procedural world (default) or a folder of the user's own videos, as the run's
    `TrainConfig` cfg asks (data, seed, batch and clip sizes, windows, frameskips)."""
    if cfg.data == "world":
        from .data import WorldStream

        return WorldStream(seed=cfg.seed * 1000 + rank, batch_size=cfg.batch_size,
                           num_frames=cfg.num_frames, image_frames=cfg.image_frames,
                           size=image_size, window_start_max=cfg.window_start_max,
                           frameskips=parse_frameskips(cfg.frameskips))
    if cfg.image_frames:
        raise ValueError("--image-frames needs the procedural world; use --image-frames 0 with "
                         "a video folder")
    from .video_folder import VideoFolderStream

    return VideoFolderStream(cfg.data, batch_size=cfg.batch_size, num_frames=cfg.num_frames,
                             size=image_size, frame_skip=cfg.frame_skip,
                             seed=cfg.seed * 1000 + rank)


class _EncodedWorldBatches(torch.utils.data.Dataset):
    """Batches start, start + 1, ... of a WorldStream with their captions' token states, so that
    DataLoader workers can render and encode them ahead of the training step."""

    def __init__(self, stream, start: int, count: int) -> None:
        self.stream, self.start, self.count = stream, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        from .text import get_text_encoder

        batch = self.stream.batch_at(self.start + i)
        states, mask = get_text_encoder().encode(batch.captions)
        return batch, states, mask


def _init_worker(_worker_id: int) -> None:
    """One thread per worker; SIGTERM/SIGINT sent to the whole process group (Ctrl-C, `timeout`)
    are left to the main process, which finishes its step and checkpoints before it exits."""
    torch.set_num_threads(1)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


def encoded_batches(stream, workers: int, remaining: int, pin_memory: bool):
    """Yield (batch, states, mask) for the next `remaining` batches of `stream`, advancing its
    position as each one is consumed (so a checkpoint taken between steps resumes exactly)."""
    from .text import get_text_encoder

    if not workers:
        encoder = get_text_encoder()
        for batch in stream:
            yield (batch, *encoder.encode(batch.captions))
        return
    loader = torch.utils.data.DataLoader(
        _EncodedWorldBatches(stream, stream.batch_index, remaining), batch_size=None,
        num_workers=workers, worker_init_fn=_init_worker, prefetch_factor=4,
        pin_memory=pin_memory, multiprocessing_context="spawn")  # no fork of a CUDA process
    for item in loader:
        stream.batch_index += 1
        yield item
