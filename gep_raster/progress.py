"""Progress of the block computation: blocks and pixels done, throughput, ETA.

:class:`BlockProgress` counts finished blocks and pixels (thread-safe; every block of a run adds its
own ``h × w`` pixels) and shows them on stderr, at most a few times per second:

    compute_write ━━━━━━━━━━╸━━━━━━━━━ blocks 412/736 · 432.0/771.8 Mpx · 38.2 Mpx/s · ETA 0:00:09

* on a terminal, with `rich <https://github.com/Textualize/rich>`_ (a dependency of gep_raster), a
  live line that rich redraws ``refresh_per_second`` times per second (default 4);
* otherwise (a log file of a batch job, or rich missing) plain text lines, at most one every
  ``min_interval`` seconds (default 10 s in a file, 0.5 s on a terminal, where ``\\r`` rewrites the line).

Everything is counted in blocks and pixels, never in a non-linear measure: the bar is the share of
pixels done, the throughput is pixels done / elapsed time since the first block was asked for, and
the ETA is the pixels left / that throughput. Blocks of a run have about the same cost per pixel
(one pass over the inputs, the same services), so pixels are the natural unit of work.

With ``enabled=False`` nothing is shown and nothing is written anywhere (the counters still count).
"""
from __future__ import annotations

import sys
import threading
import time

__all__ = ["BlockProgress", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``--:--:--`` when unknown)."""
    if seconds is None or not seconds == seconds or seconds == float("inf"):
        return "--:--:--"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class BlockProgress:
    """Thread-safe counter of finished blocks and pixels with a throttled display.

    Parameters
    ----------
    total_blocks : int
        Blocks of the run.
    total_pixels : int
        Pixels of the run (sum of the blocks' ``h × w``).
    enabled : bool
        Show the progress (stderr). False: count silently.
    label : str
        Text in front of the line.
    refresh_per_second : float
        Display updates per second of the rich live line.
    min_interval : float, optional
        Plain display: seconds between lines (default 0.5 on a terminal, 10 otherwise).
    use_rich : bool, optional
        Force (True) or avoid (False) rich; default: rich when the stream is a terminal and rich
        can be imported.
    stream : file-like, optional
        Where the display writes (default ``sys.stderr``).

    Examples
    --------
    >>> with BlockProgress(4, 4 * 256 * 256, enabled=False) as p:
    ...     for _ in range(4):
    ...         p.advance(256 * 256)
    >>> p.blocks_done, p.pixels_done
    (4, 262144)
    """

    def __init__(self, total_blocks: int, total_pixels: int, *, enabled: bool = True, label: str = "compute",
                 refresh_per_second: float = 4.0, min_interval: float | None = None,
                 use_rich: bool | None = None, stream=None):
        self.total_blocks = int(total_blocks)
        self.total_pixels = int(total_pixels)
        self.enabled = bool(enabled)
        self.label = label
        self.refresh_per_second = float(refresh_per_second)
        self.blocks_done = 0
        self.pixels_done = 0
        self._lock = threading.Lock()
        self._t0: float | None = None
        self._t_end: float | None = None
        self._stream = stream
        self._min_interval = min_interval
        self._last_print = float("-inf")  # the first block is always printed (perf_counter has an arbitrary origin)
        self._rich = None
        self._task = None
        self._plain = False
        self._use_rich = use_rich
        self._started = False

    # ------------------------------------------------------------------ counters
    def elapsed(self) -> float:
        if self._t0 is None:
            return 0.0
        return (self._t_end if self._t_end is not None else time.perf_counter()) - self._t0

    def rate_px_s(self) -> float | None:
        """Pixels per second since :meth:`start` (None before the first block)."""
        el = self.elapsed()
        return self.pixels_done / el if self.pixels_done and el > 0 else None

    def eta_s(self) -> float | None:
        """Seconds left at the mean throughput so far (None before the first block)."""
        r = self.rate_px_s()
        return (self.total_pixels - self.pixels_done) / r if r else None

    def snapshot(self) -> dict:
        """Counters now: blocks, pixels, elapsed seconds, Mpx/s, ETA seconds."""
        r = self.rate_px_s()
        return {"blocks_done": self.blocks_done, "blocks_total": self.total_blocks,
                "pixels_done": self.pixels_done, "pixels_total": self.total_pixels,
                "elapsed_s": self.elapsed(), "mpx_per_s": r / 1e6 if r else None, "eta_s": self.eta_s()}

    def text(self) -> str:
        """One line: ``blocks a/b · x/y Mpx · r Mpx/s · ETA h:mm:ss``."""
        s = self.snapshot()
        rate = f"{s['mpx_per_s']:.1f}" if s["mpx_per_s"] is not None else "--"
        done = self.blocks_done >= self.total_blocks and self._t_end is not None
        tail = f"done in {format_duration(s['elapsed_s'])}" if done else f"ETA {format_duration(s['eta_s'])}"
        return (f"blocks {s['blocks_done']}/{s['blocks_total']} · {s['pixels_done'] / 1e6:.1f}/"
                f"{s['pixels_total'] / 1e6:.1f} Mpx · {rate} Mpx/s · {tail}")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "BlockProgress":
        """Start the clock (and the display when enabled)."""
        if self._started:
            return self
        self._started = True
        self._t0 = time.perf_counter()
        if not self.enabled:
            return self
        if self._stream is None:
            self._stream = sys.stderr
        use_rich = self._use_rich
        if use_rich is None:  # a live line on a terminal; plain lines in log files (batch jobs)
            use_rich = _isatty(self._stream)
            try:
                import rich  # noqa: F401
            except ImportError:
                use_rich = False
        if use_rich:
            self._start_rich()
            return self
        self._plain = True
        if self._min_interval is None:
            self._min_interval = 0.5 if _isatty(self._stream) else 10.0
        return self

    def _start_rich(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        owner = self

        class _Counts(ProgressColumn):
            def render(self, task):
                return Text(owner.text())

        console = Console(file=self._stream)
        # one line: label, bar, counts (about 60 characters at most); the bar takes what is left
        bar = max(8, min(40, console.width - len(self.label) - 64))
        self._rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=bar), _Counts(),
                              console=console,
                              auto_refresh=True, refresh_per_second=self.refresh_per_second, transient=False)
        self._task = self._rich.add_task(self.label, total=max(self.total_pixels, 1))
        self._rich.start()

    def advance(self, pixels: int, blocks: int = 1) -> None:
        """Count ``blocks`` finished blocks of ``pixels`` pixels in all (any thread)."""
        with self._lock:
            if self._t0 is None:
                self._t0 = time.perf_counter()
            self.blocks_done += blocks
            self.pixels_done += int(pixels)
            if not self.enabled or not self._started:
                return
            if self._rich is not None:  # rich redraws on its own timer (refresh_per_second)
                self._rich.update(self._task, completed=self.pixels_done)
            elif self._plain:
                now = time.perf_counter()
                if now - self._last_print >= self._min_interval:
                    self._last_print = now
                    self._print()

    def _print(self, final: bool = False):
        line = f"{self.label} {self.text()}"
        if _isatty(self._stream):
            self._stream.write("\r" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Stop the clock; show the final state (when enabled)."""
        if self._t_end is None and self._t0 is not None:
            self._t_end = time.perf_counter()
        if not self.enabled or not self._started:
            return
        with self._lock:
            if self._rich is not None:
                self._rich.update(self._task, completed=self.pixels_done)
                self._rich.refresh()
                self._rich.stop()
                self._rich = None
            elif self._plain:
                self._print(final=True)
                self._plain = False

    def __enter__(self) -> "BlockProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
