"""Deprecated: the first releases' ``georefscale.pipeline``, split by concern.

Every name still resolves, with a ``DeprecationWarning`` naming its new place:
:mod:`georefscale.api` (``onboard``, ``ground``, ``roundtrip``, ``relevance_map``,
``encode_lr``), :mod:`georefscale.product` (``LRInfo``, tile ranges), :mod:`georefscale.report`
(``describe_lr``, ``reconstruction_error``), :mod:`georefscale.options` (defaults),
:mod:`georefscale.references`, :mod:`georefscale.plans` and
:mod:`georefscale.engine.run` (models).
"""

from __future__ import annotations

from georefscale.lazy import lazy_exports

#: old name -> "module:new name"
_MOVED = {
    "onboard": "georefscale.api:onboard",
    "ground": "georefscale.api:ground",
    "roundtrip": "georefscale.api:roundtrip",
    "relevance_map": "georefscale.api:relevance_map",
    "encode_lr": "georefscale.api:encode_lr",
    "Source": "georefscale.api:Source",
    "Product": "georefscale.api:Product",
    "LRInfo": "georefscale.product:LRInfo",
    "FORMAT_VERSION": "georefscale.product:FORMAT_VERSION",
    "encode_ranges": "georefscale.product:encode_ranges",
    "decode_ranges": "georefscale.product:decode_ranges",
    "describe_lr": "georefscale.report:describe_lr",
    "reconstruction_error": "georefscale.report:reconstruction_error",
    "DEFAULT_MODEL": "georefscale.options:DEFAULT_MODEL",
    "AUTO": "georefscale.options:AUTO",
    "ModelLike": "georefscale.options:ModelLike",
    "as_catalog": "georefscale.references:as_catalog",
    "OnboardPlan": "georefscale.plans.onboard:OnboardPlan",
    "write_lr": "georefscale.plans.onboard:write_lr",
    "load_model": "georefscale.engine.run:resolve_model",
    "resolve_model": "georefscale.engine.run:resolve_model",
    "noref_twin": "georefscale.engine.run:noref_twin",
    "noref_name": "georefscale.engine.cards:noref_name",
}

__all__ = sorted(_MOVED)


__getattr__, __dir__ = lazy_exports("georefscale.pipeline", _MOVED, globals(), moved=True)
