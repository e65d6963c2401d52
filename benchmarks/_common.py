"""Shared benchmark plumbing: device names, fair timing, and the per-device results file.

Every benchmark runs geomjax and its reference in one process on the same data, checks that the
answers agree before it reports a speed, times with warm-up and ``block_until_ready``, reports
compile time separately, and records a Markdown section in ``benchmarks/results/<device>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import os
import platform
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def single_thread_env() -> None:
    """Pin BLAS/XLA to one thread; call before importing numpy/jax for single-threaded runs.

    BLAS gets one thread from the usual variables and XLA's Eigen kernels run single-threaded.
    XLA:CPU has no flag for the size of its own thread pool, so benchmarks that must use exactly
    one core also pin the process (``os.sched_setaffinity``, as bench_probing does); ratios
    compare CPU seconds, which count every thread either way.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def device_name() -> str:
    """A file-name-safe device kind: ``cpu-<n>core`` or e.g. ``gpu-nvidia-h200``."""
    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu-{os.cpu_count()}core"
    kind = re.sub(r"[^a-z0-9]+", "-", d.device_kind.lower()).strip("-")
    return f"{d.platform}-{kind}"


def block(x):
    import jax

    return jax.block_until_ready(x)


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    first_call_s: float | None = None  # includes compilation for jitted code

    @property
    def compile_s(self) -> float | None:
        return None if self.first_call_s is None else max(self.first_call_s - self.wall_s, 0.0)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_call(
    fn: Callable, *args, repeat: int = 3, warmup: bool = True, **kw
) -> tuple[object, Timing]:
    """Best-of-``repeat`` wall and process-CPU time of ``fn(*args)``; the first call is reported
    separately (it includes compilation for jitted functions)."""
    first = None
    out = None
    if warmup:
        t0 = time.perf_counter()
        out = block(fn(*args, **kw))
        first = time.perf_counter() - t0
    best_w, best_c = float("inf"), float("inf")
    for _ in range(max(repeat, 1)):
        c0, t0 = _cpu(), time.perf_counter()
        out = block(fn(*args, **kw))
        best_w = min(best_w, time.perf_counter() - t0)
        best_c = min(best_c, _cpu() - c0)
    return out, Timing(best_w, best_c, first)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, one repeat (CI keeps benchmarks alive)")
    p.add_argument("--no-record", action="store_true",
                   help="print only; do not update results/<device>.md")
    p.add_argument("--repeat", type=int, default=3)
    return p


def machine_line() -> str:
    import jax

    d = jax.devices()[0]
    return (
        f"{device_name()} ({d.device_kind}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs), jax {jax.__version__}, {_dt.date.today().isoformat()}"
    )


def record(section: str, markdown: str, smoke: bool = False) -> Path | None:
    """Replace (or append) ``## section`` in ``results/<device>.md`` (smoke runs: not at all)."""
    if smoke:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{device_name()}.md"
    lock = RESULTS_DIR / ".lock"
    body = f"## {section}\n\n_{machine_line()}_\n\n{markdown.strip()}\n"
    with open(lock, "w") as lf, contextlib.ExitStack():
        fcntl.flock(lf, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else f"# Benchmark results: {device_name()}\n\n"
        pat = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
        if pat.search(text):
            text = pat.sub(lambda _: body + "\n", text)
        else:
            text = text.rstrip() + "\n\n" + body
        path.write_text(text)
    return path


def md_table(rows: list[dict], floatfmt: str = ".4g") -> str:
    """A Markdown table from a list of dicts (keys of the first row are the columns)."""
    if not rows:
        return ""
    cols = list(rows[0])
    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
