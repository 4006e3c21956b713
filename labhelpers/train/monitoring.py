"""Watching a training run: live loss curves, throughput and memory, TensorBoard logs, interruptions.

``LiveMonitor`` is a ``TrainerCallback``. In Jupyter it redraws one figure in place (train and
validation loss); headless (papermill, a shell) it draws nothing until asked and prints one line per
log instead. It records, per logging step: loss, eval_loss, tokens/s, samples/s and memory (process
RSS on CPU, peak CUDA memory on GPU). Set ``include_num_input_tokens_seen=True`` in
``TrainingArguments`` for tokens/s.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import psutil
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback


def memory_mb() -> float:
    """Peak CUDA memory allocated (MB) when a GPU is in use, else this process's resident memory."""

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20

    return psutil.Process().memory_info().rss / 2**20


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


class LiveMonitor(TrainerCallback):
    """A Trainer callback: ``trainer.add_callback(mon)``; ``mon.history`` / ``mon.frame()`` / ``mon.plot()``."""

    def __init__(self, live: bool | None = None, redraw_every: int = 1, log=print):
        self.live = _in_notebook() if live is None else live
        self.redraw_every = max(1, int(redraw_every))
        self.log = log
        self.history: list[dict] = []
        self._handle = None
        self._t0 = None
        self._n_logs = 0

    def on_train_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()
        self._step0 = state.global_step  # a resumed run counts its speed from where it resumed
        self._tokens0 = state.num_input_tokens_seen or 0
        self._batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or self._t0 is None or not ({"loss", "eval_loss"} & set(logs)):
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        steps = state.global_step - self._step0
        row = {"step": state.global_step, "seconds": round(elapsed, 2),
               "loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"),
               "samples_per_s": steps * self._batch / elapsed,
               "tokens_per_s": ((state.num_input_tokens_seen or 0) - self._tokens0) / elapsed or None,
               "memory_mb": memory_mb()}
        self.history.append(row)
        self._n_logs += 1
        if self.live and self._n_logs % self.redraw_every == 0:
            self._redraw()
        elif not self.live and self.log:
            part = "  ".join(f"{k} {row[k]:.4f}" for k in ("loss", "eval_loss") if row[k] is not None)
            self.log(f"step {row['step']:>4}  {part}  {row['samples_per_s']:.1f} samples/s  "
                     f"{row['memory_mb']:.0f} MB")

    def on_train_end(self, args, state, control, **kw):
        if self.live and self.history:
            self._redraw()

    def _redraw(self):
        from IPython.display import display

        fig = self.plot()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)

    def frame(self):
        """The history as a pandas table (one row per log)."""

        return pd.DataFrame(self.history)

    def plot(self):
        """Loss curves (train, validation) and throughput, as one figure."""

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        for key, style, label in (("loss", "-", "train"), ("eval_loss", "o-", "validation")):
            pts = [(h["step"], h[key]) for h in self.history if h.get(key) is not None]
            if pts:
                ax1.plot(*zip(*pts), style, label=label)
        ax1.set_xlabel("step")
        ax1.set_ylabel("loss")
        ax1.legend()
        ax1.grid(alpha=0.3)
        pts = [(h["step"], h["samples_per_s"]) for h in self.history]
        if pts:
            ax2.plot(*zip(*pts), "-", color="#55a868")
        ax2.set_xlabel("step")
        ax2.set_ylabel("samples / s")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        return fig


class StopAtStep(TrainerCallback):
    """A Trainer callback that stops training after ``step`` (an interruption, made on purpose); the
    learning-rate schedule stays that of ``max_steps``.

    With ``save`` (the default) it saves a checkpoint at that step first, as a run killed right after its last
    save would have; ``save=False`` only stops (notebook 02 compares a run's first steps with another's).
    """

    def __init__(self, step: int, save: bool = True):
        self.step = step
        self.save = save

    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= self.step:
            control.should_save = control.should_save or self.save
            control.should_training_stop = True
        return control


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard logged under ``logdir`` (all runs in it), read with tensorboard's reader:
    ``{tag: [(step, value), ...]}``."""

    files = sorted(Path(logdir).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files under {logdir}: was report_to='tensorboard' set?")
    out: dict[str, list[tuple[int, float]]] = {}
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out
