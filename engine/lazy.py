"""Public names of a package imported from its submodules on first use (PEP 562), so that importing the
package, or one light submodule of it, stays cheap.

    __getattr__, __dir__ = lazy_exports(__name__, {"Store": "core", ...})    # in the package's __init__.py

``engine``, ``engine.video`` and ``index.store`` re-export this way. Only the standard library is imported.
"""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: "dict[str, str]"):
    """``(__getattr__, __dir__)`` for ``package``: each name of ``exports`` (name → submodule, relative to the
    package) is imported from its submodule when first looked up, then kept in the package's namespace so
    later look-ups skip this function; any other name is an ``AttributeError``."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
