"""The one registry of fault types: built-ins by dotted path, plugins by entry point.

Built-ins are imported on first use; third-party packages add injectors through the
``scep.injectors`` entry-point group (each entry point names an Injector subclass).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from injectors.base import Injector, UnknownInjector

__all__ = ["all_injectors", "get_injector", "known_types"]

BUILTIN = {
    "network.latency": "injectors.network.injectors.LatencyInjector",
    "network.bandwidth": "injectors.network.injectors.BandwidthInjector",
    "network.reset_peer": "injectors.network.injectors.ResetPeerInjector",
    "network.blackhole": "injectors.network.injectors.BlackholeInjector",
    "process.kill": "injectors.process.injectors.KillInjector",
    "process.pause": "injectors.process.injectors.PauseInjector",
}

ENTRY_POINT_GROUP = "scep.injectors"


def _load(dotted: str) -> type[Injector]:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


@cache
def _plugin_paths() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> list[str]:
    return sorted({*BUILTIN, *_plugin_paths()})


@cache
def get_injector(name: str) -> Injector:
    if name in BUILTIN:
        return _load(BUILTIN[name])()
    plugins = _plugin_paths()
    if name in plugins:
        return plugins[name].load()()  # type: ignore[attr-defined]
    raise UnknownInjector(name, known_types())


def all_injectors() -> dict[str, Injector]:
    return {name: get_injector(name) for name in known_types()}
