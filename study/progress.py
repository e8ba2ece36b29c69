"""The live progress line of ``study run`` on a terminal: trials finished, running, pruned and
failed of the total, the best objective so far, elapsed time and an estimate of the time left.
In a log (not a terminal) there is no live line; the per-trial lines say the same."""
from __future__ import annotations

import time

from rich.live import Live
from rich.text import Text


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LiveLine:
    """A context manager around rich's ``Live``; ``update`` takes the Recorder's counts. The line
    is drawn at the bottom of the terminal; the per-trial lines printed through the same console
    scroll above it. The estimate of the time left is the elapsed time per finished recipe of this
    run times the recipes still to finish (none before the first recipe finishes)."""

    def __init__(self, console, study: str, mode: str = "max"):
        self.study, self.mode = study, mode
        self.state: dict = {}
        self.t0 = time.perf_counter()
        self.first_done: int | None = None  # recipes already finished when this run started (resume)
        self.live = Live(self, console=console, refresh_per_second=2, transient=True)

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def update(self, **state) -> None:
        if self.first_done is None:
            self.first_done = state.get("finished", 0)
        self.state = state

    def text(self) -> str:
        s = self.state
        elapsed = time.perf_counter() - self.t0
        if not s:
            return f"{self.study}: preparing ({_clock(elapsed)} elapsed)"
        finished, total = s["finished"], s["total"]
        done_here = finished - (self.first_done or 0)
        left = (f"about {_clock(elapsed / done_here * max(0, total - finished))} left" if done_here > 0
                else "time left: after the first recipe")
        best = "-" if s.get("best") is None else f"{s['best']:.3f}"
        base = f", {s['baselines']} baseline(s) running" if s.get("baselines") else ""
        return (f"{self.study}: {finished}/{total} recipes finished ({s.get('completed', 0)} completed, "
                f"{s.get('pruned', 0)} pruned, {s.get('failed', 0)} failed), {s['running']} running{base}; "
                f"best val objective {best} ({self.mode}); {_clock(elapsed)} elapsed, {left}")

    def __rich__(self) -> Text:
        return Text(self.text(), style="bold")
