"""Lazy re-exports for package ``__init__`` modules (PEP 562), so importing a package stays
cheap: a name's module is imported the first time the name is used."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: dict[str, str], namespace: dict[str, Any], *,
                 moved: bool = False) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a module that re-exports ``names``.

    Args:
        package: the module's name, for messages.
        names: public name -> module defining it (``"module"`` or ``"module:other_name"``).
        namespace: the module's ``globals()`` (resolved names are cached there, except moved
            ones, which warn on every use).
        moved: the names moved away: each use warns with a ``DeprecationWarning`` naming the
            new place.
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        attr = attr or name
        if moved:
            warnings.warn(f"{package}.{name} moved to {module}.{attr}", DeprecationWarning,
                          stacklevel=2)
        value = getattr(importlib.import_module(module), attr)
        if not moved:
            namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
