"""scep.memory: the malloc_trim wrapper and the BLAS thread cap, in real processes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from scep import memory

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter (env changes and loaded libraries stay there)."""
    clean = {k: v for k, v in os.environ.items() if k not in memory.NATIVE_THREAD_VARS}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc check is Linux-only")
def test_release_free_memory_runs_malloc_trim_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert memory.release_free_memory() is True


def test_release_free_memory_frees_garbage_cycles():
    # A run's HTTP clients end up in cycles that keep native SSL memory alive until a
    # full collection; the release must collect them even with automatic gc paused.
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert alive() is not None
        memory.release_free_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_settle_heap_imports_freezes_and_reports_missing_modules():
    code = """
import gc, json, sys
from scep.memory import settle_heap
missing = settle_heap(["json.decoder", "scep_no_such_module"])
print(json.dumps([missing, "json.decoder" in sys.modules, gc.get_freeze_count()]))
"""
    missing, imported, frozen = json.loads(_python(code))
    assert missing == ["scep_no_such_module"]
    assert imported
    assert frozen > 1000


def test_the_first_end_of_each_task_kind_freezes_what_is_alive_and_later_ones_do_not():
    # In a fresh interpreter: freezing is process-wide and would outlive this test.
    code = """
import gc, json
from scep.memory import release_free_memory
counts = [gc.get_freeze_count()]
release_free_memory(after="execute_run")
counts.append(gc.get_freeze_count())
kept = [object() for _ in range(5000)]  # alive, tracked lists/objects made afterwards
keep_too = [[i] for i in range(5000)]
release_free_memory(after="execute_run")
counts.append(gc.get_freeze_count())
release_free_memory(after="analyse_run")
counts.append(gc.get_freeze_count())
release_free_memory()
counts.append(gc.get_freeze_count())
print(json.dumps(counts))
"""
    before, first, again, other_kind, unnamed = json.loads(_python(code))
    assert first > before  # the interpreter's start-up is now frozen
    assert again == first  # the same kind a second time: nothing more
    assert other_kind >= first + 5000  # another kind's first end: what is alive now
    assert unnamed == other_kind


def test_settle_heap_default_modules_import():
    code = """
import json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
django.setup()
from scep.memory import settle_heap
print(json.dumps(settle_heap()))
"""
    assert json.loads(_python(code)) == []


def test_release_free_memory_is_a_noop_without_glibc(monkeypatch):
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    try:
        assert memory.release_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()


def test_release_free_memory_is_a_noop_when_libc_has_no_malloc_trim(monkeypatch):
    class NoTrim:  # a C library without malloc_trim (e.g. musl's older releases)
        def __init__(self, name: str) -> None:
            pass

        def __getattr__(self, name: str):
            raise AttributeError(name)

    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.ctypes, "CDLL", NoTrim)
    try:
        assert memory.release_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()


def test_release_free_memory_gives_freed_heap_back_to_the_kernel():
    # Fragment the heap the way a run does: many small native blocks, most freed while
    # a few survive on top. RSS after the trim must drop well below RSS before it.
    code = """
import ctypes, json
from scep.memory import release_free_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD high: free() alone never trims
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
blocks = [libc.malloc(4000) for _ in range(50000)]
for b in blocks:
    ctypes.memset(b, 1, 4000)
for b in blocks[:-1]:
    libc.free(b)
before = rss()
release_free_memory()
print(json.dumps([before, rss()]))
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("uses /proc")
    before, after = json.loads(_python(code))
    assert before - after > 100 * 2**20, (before, after)


def test_limit_native_threads_caps_openblas_and_sets_the_env():
    code = """
import json, os, threadpoolctl
from scep.memory import limit_native_threads
limit_native_threads()
pools = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
print(json.dumps([pools, os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]]))
"""
    pools, omp, openblas = json.loads(_python(code))
    assert pools and all(n == 1 for n in pools), pools
    assert (omp, openblas) == ("1", "1")


def test_limit_native_threads_keeps_an_operators_setting():
    code = """
import json, os
from scep.memory import limit_native_threads
limit_native_threads()
print(json.dumps([os.environ["OMP_NUM_THREADS"], os.environ["MKL_NUM_THREADS"]]))
"""
    assert json.loads(_python(code, {"OMP_NUM_THREADS": "3"})) == ["3", "1"]
