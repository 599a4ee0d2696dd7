"""Deprecated: the first releases' ``georefscale.distributed``, now the package
:mod:`georefscale.archive` (plan, scene, bands, cluster, manifest, run). Every public name still
resolves, with a ``DeprecationWarning`` naming its new place."""

from __future__ import annotations

from georefscale.lazy import lazy_exports

#: old name -> "module:new name"
_MOVED = {
    "process_archive": "georefscale.archive.run:process_archive",
    "run_split_scene": "georefscale.archive.run:run_split_scene",
    "plan_archive": "georefscale.archive.plan:plan_archive",
    "SceneJob": "georefscale.archive.plan:SceneJob",
    "Input": "georefscale.archive.plan:Input",
    "DEFAULT_SPLIT_PIXELS": "georefscale.archive.plan:DEFAULT_SPLIT_PIXELS",
    "run_scene": "georefscale.archive.scene:run_scene",
    "ArchiveResult": "georefscale.archive.manifest:ArchiveResult",
    "is_finished": "georefscale.archive.manifest:is_finished",
    "verify_product": "georefscale.archive.manifest:verify_product",
    "MANIFEST": "georefscale.archive.manifest:MANIFEST",
    "DEFAULT_BAND_ROWS": "georefscale.archive.bands:DEFAULT_BAND_ROWS",
    "connect": "georefscale.archive.cluster:connect",
    "single_threaded": "georefscale.engine.run:single_threaded",
}

__all__ = sorted(_MOVED)


__getattr__, __dir__ = lazy_exports("georefscale.distributed", _MOVED, globals(), moved=True)
