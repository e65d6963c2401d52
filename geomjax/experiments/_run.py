"""Run folders: tidy tables, settings and versions, resumable stages.

A run folder holds ``settings.json`` (the options and package versions), ``tables/<name>.parquet``
and ``.csv``, ``figures/<name>.png``, ``stages/<name>.done`` markers and ``report.html``. A stage
that finished is not run again when the same folder is reused, so an interrupted run resumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RunDir", "versions"]

_PACKAGES = (
    "geomjax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "librosa",
    "datasets",
    "matplotlib",
)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, plus Python and the JAX backend."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    try:
        import jax

        d = jax.devices()[0]
        out["jax_backend"] = f"{d.platform}:{d.device_kind} x{jax.device_count()}"
    except Exception as e:  # pragma: no cover - reported, never fatal
        out["jax_backend"] = f"unavailable ({e})"
    return out


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class RunDir:
    """One run's output folder.

    Args:
        root: the folder (created when missing). Reusing a folder resumes the run: finished stages
            are skipped, and settings must match the ones recorded (else ``ValueError``).
        settings: JSON-serialisable options of the run.
    """

    def __init__(self, root: str | os.PathLike, settings: dict[str, Any] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("tables", "figures", "stages"):
            (self.root / sub).mkdir(exist_ok=True)
        self.settings = dict(settings or {})
        spath = self.root / "settings.json"
        if spath.exists():
            old = json.loads(spath.read_text())
            if settings is not None and old.get("settings") != json.loads(
                json.dumps(self.settings)
            ):
                raise ValueError(
                    f"{self.root} holds a run with different settings ({old.get('settings')}); "
                    "use a new --out folder or the same options to resume it."
                )
        else:
            meta = {
                "settings": self.settings,
                "versions": versions(),
                "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            _atomic_write(
                spath, lambda p: Path(p).write_text(json.dumps(meta, indent=2, default=str))
            )

    # ---- tables -------------------------------------------------------------------------
    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``tables/<name>.parquet`` and ``.csv`` atomically; returns the Parquet path."""
        df = df.reset_index(drop=True)
        pq = self.root / "tables" / f"{name}.parquet"
        _atomic_write(pq, lambda p: df.to_parquet(p, index=False))
        _atomic_write(pq.with_suffix(".csv"), lambda p: df.to_csv(p, index=False))
        return pq

    def load_table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.root / "tables" / f"{name}.parquet")

    def has_table(self, name: str) -> bool:
        return (self.root / "tables" / f"{name}.parquet").exists()

    def tables(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "tables").glob("*.parquet"))

    # ---- figures ------------------------------------------------------------------------
    def figure_path(self, name: str) -> Path:
        return self.root / "figures" / f"{name}.png"

    def save_figure(self, name: str, fig) -> Path:
        path = self.figure_path(name)
        _atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path

    # ---- stages -------------------------------------------------------------------------
    def done(self, stage: str) -> bool:
        return (self.root / "stages" / f"{stage}.done").exists()

    def mark_done(self, stage: str, info: dict[str, Any] | None = None) -> None:
        info = dict(info or {})
        info["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        _atomic_write(
            self.root / "stages" / f"{stage}.done",
            lambda p: Path(p).write_text(json.dumps(info, default=str)),
        )

    def stage_info(self, stage: str) -> dict[str, Any]:
        p = self.root / "stages" / f"{stage}.done"
        return json.loads(p.read_text()) if p.exists() else {}

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        _atomic_write(path, lambda p: Path(p).write_text(text))
        return path
