"""The one registry of fault types: built-ins found per family, plugins by entry point.

Each built-in family is a package ``injectors/<family>/`` whose ``injectors`` module
defines concrete ``Injector`` subclasses; they are collected on first use. Third-party
packages add injectors through the ``scep.injectors`` entry-point group (each entry point
names an Injector subclass; its name is the fault type).
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from injectors.base import Injector, UnknownInjector

__all__ = ["FAMILIES", "all_injectors", "get_injector", "known_types"]

FAMILIES = (
    "network",
    "http",
    "dns",
    "process",
    "resource",
    "database",
    "cloud",
    "code",
    "control",
)
ENTRY_POINT_GROUP = "scep.injectors"


@cache
def _builtins() -> dict[str, type[Injector]]:
    found: dict[str, type[Injector]] = {}
    for family in FAMILIES:
        module_name = f"injectors.{family}.injectors"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name in (module_name, f"injectors.{family}"):
                continue  # family not built (yet)
            raise
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Injector)
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
                and isinstance(obj.__dict__.get("name"), str)
            ):
                found[obj.name] = obj
    return found


@cache
def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    return sorted({*_builtins(), *_plugins()})


@cache
def get_injector(name: str) -> Injector:
    builtins = _builtins()
    if name in builtins:
        return builtins[name]()
    plugins = _plugins()
    if name in plugins:
        return plugins[name].load()()
    raise UnknownInjector(name, known_types())


def all_injectors() -> dict[str, Injector]:
    return {name: get_injector(name) for name in known_types()}


def clear_cache() -> None:
    """Forget what was discovered (tests that install a plugin call this)."""
    _builtins.cache_clear()
    _plugins.cache_clear()
    get_injector.cache_clear()
