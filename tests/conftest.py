"""Shared fixtures: the real sample archive in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("GEOREFSCALE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


DATA = _data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the real sample archive; tests needing it skip when it is absent."""
    if not (DATA / "README.md").exists():
        pytest.skip(f"sample archive not found at {DATA} (set GEOREFSCALE_DATA)")
    return DATA


@pytest.fixture(scope="session")
def naip_dir(data_dir: Path) -> Path:
    return data_dir / "naip"


@pytest.fixture(scope="session")
def oscd_dir(data_dir: Path) -> Path:
    return data_dir / "oscd"


def write_crop(src: Path, out: Path, size: int) -> Path:
    """Write the top-left ``size`` x ``size`` window of the real raster ``src`` to ``out`` (its
    profile, band descriptions and tags kept; the transform moved to the window)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        win = Window(0, 0, size, size)
        profile = {**ds.profile, "width": size, "height": size,
                   "transform": ds.window_transform(win)}
        with rasterio.open(out, "w", **profile) as o:
            o.write(ds.read(window=win))
            o.descriptions = ds.descriptions
            o.update_tags(**ds.tags())
    return out


@pytest.fixture(scope="session")
def crop():
    """:func:`write_crop`, for tests and fixtures of any scope."""
    return write_crop
