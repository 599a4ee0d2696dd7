"""Archives at scale: every selected scene of a catalog through on board (and ground), serially
or on Dask distributed.

:mod:`.plan` (scene jobs), :mod:`.masks` (a reference's mask asset in its job),
:mod:`.inputs` (a scene's inputs as read), :mod:`.scene` (one scene, published atomically),
:mod:`.bands` (large scenes split over workers, on board and on the ground), :mod:`.cluster`
(the Dask client), :mod:`.manifest` (scene and archive manifests), :mod:`.run`
(:func:`process_archive`).
"""

from georefscale.archive.cluster import connect
from georefscale.archive.manifest import ArchiveResult, is_finished
from georefscale.archive.plan import Input, SceneJob, plan_archive
from georefscale.archive.run import process_archive, run_split_scene
from georefscale.archive.scene import run_scene

__all__ = [
    "ArchiveResult",
    "Input",
    "SceneJob",
    "connect",
    "is_finished",
    "plan_archive",
    "process_archive",
    "run_scene",
    "run_split_scene",
]
