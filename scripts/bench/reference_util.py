"""Shared by the Hugging Face reference scripts of the benchmarks (run in .venv-ref)."""

import time

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (forward, backward, clip, AdamW, scheduler)."""

    def __init__(self):
        self.times = []
        self._start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)
