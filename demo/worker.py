"""Run a sampling job in a worker thread so that a Gradio generator handler stays cancellable.

A handler iterates `BackgroundJob.events()`: it receives every `PipelineStep` the pipeline
reports (and `None` as a heartbeat while a step is running) and can yield to Gradio in between.
When Gradio cancels the event (the Stop button) it closes the handler's generator; the job's next
progress callback then raises `Cancelled`, so the sampler stops within one step instead of
running on in the background and holding the CPU.
"""

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vdm_core.outputs import PipelineStep, ProgressCallback

T = TypeVar("T")
_DONE = object()


class Cancelled(Exception):
    """Raised inside a job whose consumer has gone away (the event was cancelled)."""


class BackgroundJob(Generic[T]):
    """`fn(callback)` run in a daemon thread; `events()` streams its progress, then `result`."""

    def __init__(self, fn: Callable[[ProgressCallback], T], name: str = "vdm-job"):
        self._fn = fn
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._result: T | None = None
        self._error: BaseException | None = None

    def _callback(self, step: PipelineStep) -> None:
        """The pipeline's progress callback: stop if cancelled, else hand the step over."""
        if self._stop.is_set():
            raise Cancelled("the request was cancelled")
        self._events.put(step)

    def _run(self) -> None:
        """The worker thread: run the job, keep its result or error, then signal the end."""
        try:
            self._result = self._fn(self._callback)
        except BaseException as exc:  # handed to the consumer thread, which re-raises it
            self._error = exc
        finally:
            self._events.put(_DONE)

    def events(self, heartbeat_s: float = 1.0) -> Iterator[PipelineStep | None]:
        """Start the job and yield its steps (None every heartbeat_s without one).

        Re-raises the job's exception at the end. Closing the iterator early cancels the job.
        """
        self._thread.start()
        try:
            while True:
                try:
                    item = self._events.get(timeout=heartbeat_s)
                except queue.Empty:
                    yield None
                    continue
                if item is _DONE:
                    break
                yield item
        finally:
            self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    @property
    def result(self) -> T:
        """The job's return value (set once `events()` is exhausted)."""
        return self._result

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
