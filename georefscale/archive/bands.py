"""Very large scenes: the tile rows of either plan (on board or ground) computed in bands by
tasks on the workers, stitched by one writer on the client.

Each band task opens the scene's files itself, makes its tiles through the same plan as the
serial path (:meth:`OnboardPlan.tile <georefscale.plans.onboard.OnboardPlan.tile>` /
:meth:`GroundPlan.tile <georefscale.plans.ground.GroundPlan.tile>`) and saves them, atomically, to a
``.npz`` part in ``out/.<id>.parts-<key>/`` (which also makes finished bands survive an
interruption); the writer reads the parts in order and writes the one product with the same
bytes as the serial path. On board, the client measures the reference warp once and gives it
to every band, and each band reports how each of its tiles was made (mode and measured gain).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from georefscale.archive.inputs import SceneInputs
from georefscale.archive.plan import SceneJob
from georefscale.archive.scene import ground_plan, onboard_plan, open_scene, product_path
from georefscale.atomic import atomic_output
from georefscale.options import ClusterOptions
from georefscale.plans.ground import HRTile, write_hr
from georefscale.plans.onboard import LRTile, write_lr
from georefscale.product import MODES, LRInfo
from georefscale.raster.coreg import Coregistration
from georefscale.raster.io import open_raster
from georefscale.references import ReferenceSet

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DEFAULT_BAND_ROWS", "ground_band", "onboard_band", "split_ground", "split_onboard"]

#: Tile rows per task when a scene is split.
DEFAULT_BAND_ROWS = ClusterOptions().band_rows
#: Entry of an on-board band's ``.npz``: per tile, ``[row, col, mode index, gain (dB)]`` (mode
#: indices into :data:`~georefscale.product.MODES`).
MODES_KEY = "modes"


def _bands(n_rows: int, band_rows: int) -> list[range]:
    return [range(r, min(r + band_rows, n_rows)) for r in range(0, n_rows, band_rows)]


def _save(part: str, arrays: dict[str, np.ndarray]) -> str:
    with atomic_output(part, ".tmp.npz") as tmp:
        np.savez(tmp, **arrays)
    return part


def _tile_order(name: str) -> tuple[int, int]:
    r, c = name[1:].split("_")
    return int(r), int(c)


def _read_parts(futures: list) -> Iterator[tuple[int, int, np.ndarray, tuple[int, float] | None]]:
    """``(row, col, array, [mode index, gain] or None)`` from the parts, in row-major order."""
    for fut in futures:
        part = fut if isinstance(fut, str) else fut.result()
        with np.load(part) as arrays:
            modes = ({(int(r), int(c)): (int(m), g) for r, c, m, g in arrays[MODES_KEY]}
                     if MODES_KEY in arrays else {})
            names = sorted((n for n in arrays.files if n != MODES_KEY), key=_tile_order)
            for name in names:
                r, c = _tile_order(name)
                yield r, c, arrays[name], modes.get((r, c))


def _submit(client: Client, n_rows: int, band_rows: int, parts: Path, prefix: str,
            task: Callable[..., str], *args: Any) -> list:
    futures: list = []
    for i, rows in enumerate(_bands(n_rows, band_rows)):
        part = parts / f"{prefix}{i:05d}.npz"
        futures.append(str(part) if part.is_file() else
                       client.submit(task, *args, rows, str(part), pure=False))
    return futures


def onboard_band(job: SceneJob, inputs: SceneInputs, coreg: Coregistration,
                 rows: range, part: str) -> str:
    """On a worker: the LR tiles of tile rows ``rows`` with the scene's reference warp
    ``coreg``, saved to the ``.npz`` ``part`` with how each was made (:data:`MODES_KEY`)."""
    from georefscale.engine.run import single_threaded

    with single_threaded(), open_scene(inputs) as (tds, rdss):
        plan = onboard_plan(job, inputs.refs, tds, rdss, coreg=coreg)
        arrays: dict[str, np.ndarray] = {}
        modes = []
        for t in plan.tiles(tds, rdss, rows):
            arrays[f"t{t.row}_{t.col}"] = t.y
            modes.append((t.row, t.col, MODES.index(t.mode), t.gain_db))
    arrays[MODES_KEY] = np.asarray(modes, dtype=np.float64).reshape(-1, 4)
    return _save(part, arrays)


def split_onboard(client: Client, job: SceneJob, inputs: SceneInputs, lr: Path, parts: Path,
                  band_rows: int = DEFAULT_BAND_ROWS) -> None:
    """The writer of a split scene's LR product: the plan once here (checks, reference warp,
    tags), the tiles from the band tasks, :func:`~georefscale.plans.onboard.write_lr`."""
    with open_scene(inputs) as (tds, rdss):
        plan = onboard_plan(job, inputs.refs, tds, rdss)
        futures = _submit(client, plan.tiling.n_rows, band_rows, parts, "band", onboard_band,
                          job, inputs, plan.info.coreg)
        tiles = (LRTile(r, c, y, *_mode(how, lr)) for r, c, y, how in _read_parts(futures))
        write_lr(plan, tds, lr, tiles, cog=job.onboard.cog)


def _mode(how: tuple[int, float] | None, lr: Path) -> tuple[str, float]:
    if how is None or not 0 <= how[0] < len(MODES):
        raise RuntimeError(f"{lr}: a band part does not say how its tiles were made; remove "
                           "the parts folder and run again")
    return MODES[int(how[0])], float(how[1])


def ground_band(job: SceneJob, refs: ReferenceSet, lr: str, rows: range, part: str) -> str:
    """On a worker: the HR tiles of tile rows ``rows`` of the LR product ``lr``, saved to the
    ``.npz`` ``part``."""
    from georefscale.engine.run import single_threaded

    with single_threaded(), open_raster(lr, "LR product") as lds, refs.open() as rdss:
        plan = ground_plan(job, lds, LRInfo.from_dataset(lds, lr), rdss)
        arrays = {f"t{t.row}_{t.col}": t.x for t in plan.tiles(lds, rdss, rows)}
    return _save(part, arrays)


def split_ground(client: Client, job: SceneJob, refs: ReferenceSet, lr: Path, hr: Path,
                 parts: Path, band_rows: int = DEFAULT_BAND_ROWS) -> None:
    """The writer of a split scene's HR: the plan once here (checks), the tiles from the band
    tasks, :func:`~georefscale.plans.ground.write_hr`."""
    with open_raster(lr, "LR product") as lds, refs.open() as rdss:
        info = LRInfo.from_dataset(lds, lr)
        refs.verify(info, lr)
        plan = ground_plan(job, lds, info, rdss)
        futures = _submit(client, plan.tiling.n_rows, band_rows, parts, "hr-band", ground_band,
                          job, refs, str(lr))
        tiles = (HRTile(r, c, x, None) for r, c, x, _ in _read_parts(futures))
        write_hr(plan, lds, tiles, out=hr, lr_name=product_path(Path("."), job).name)
