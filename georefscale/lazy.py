"""Lazy re-exports for package ``__init__`` modules (PEP 562), so importing a package stays
cheap: a name's module is imported the first time the name is used; and :func:`after_import`,
so a package can hook into another one (the xarray accessor) without importing it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["after_import", "lazy_exports"]


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


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``module`` is about to be imported, it leaves the meta path,
    lets the other finders find it and has ``callback`` run right after the module executed."""

    def __init__(self, module: str, callback: Callable[[], None]) -> None:
        self.module = module
        self.callback = callback

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_call(module: ModuleType) -> None:
            exec_module(module)
            self.callback()

        spec.loader.exec_module = exec_then_call
        return spec


def after_import(module: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` once ``module`` (a top-level module) is imported: now if it already
    is, else right after its first import (a one-shot finder on ``sys.meta_path``), without
    importing it.

    Args:
        module: the module's name, e.g. ``"xarray"``.
        callback: what to run then; it may import ``module``.
    """
    if module in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _AfterImport(module, callback))
