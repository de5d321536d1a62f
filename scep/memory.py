"""Keep a long-lived orchestrator worker's resident memory flat.

A worker runs thousands of experiments in one process. Measured with
``benchmarks/worker_memory.py``, its RSS grew by about a third over the first few
hundred runs and then levelled off, while Python-traced memory stayed flat. heaptrack
showed the growth was OpenSSL memory (``CRYPTO_zalloc`` under
``SSL_CTX_load_verify_locations``): every run builds HTTP clients for its probes and
scrapes, and each client loads the CA bundle into a native SSL context. Those clients
end up in reference cycles, so they are freed only by a full garbage collection; a
worker's heap holds some 200,000 long-lived objects, so CPython runs full collections
rarely and cannot see the native megabytes each cycle keeps alive. Hence:

* ``settle_heap`` (worker start-up) imports the run path and moves everything alive
  then into the permanent generation (``gc.freeze``), so a full collection afterwards
  only walks what runs created: about a millisecond instead of about 120 ms.
* ``release_free_memory`` (after every run) collects those cycles and calls glibc's
  ``malloc_trim(0)`` so the freed pages go back to the kernel (no-op without glibc).
  The first time each task kind ends it freezes again, taking in what the worker's
  start-up and a first run loaded after ``settle_heap``: without that a collection
  walked ~80,000 objects (~45 ms, holding the GIL) after every run; now well under 1 ms.
* ``limit_native_threads`` caps BLAS/OpenMP pools at one thread: runs already execute
  in parallel threads, and idle BLAS threads only hold buffers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import importlib
import os
from collections.abc import Callable, Iterable

#: Environment variables read by OpenBLAS, OpenMP runtimes and MKL when they load.
NATIVE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Modules a run imports lazily; loaded before ``gc.freeze`` so that they are frozen too.
RUN_PATH_MODULES = (
    "experiments.services.orchestrator",
    "analysis.services",
    "analysis.core.stats",
    "analysis.core.multivariate",
    "analysis.core.forecast",
    "analysis.core.score",
    "analysis.core.suggestions",
    "analysis.collectors.probe",
)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


#: Task kinds whose first run in this process has been followed by a freeze.
_settled_after: set[str] = set()


def release_free_memory(after: str | None = None) -> bool:
    """Free garbage cycles and give free heap pages back; True if malloc_trim ran.

    Safe from any thread at any time: the collection only frees unreachable objects
    and the trim only releases memory the allocator already considers free.

    ``after`` names the task kind that just ended. The first time each kind ends, what
    is alive is frozen as well: the worker's own start-up (Celery's consumer, after
    :func:`settle_heap`) and the libraries a first run imports on the way (injector
    plugins, AWS and Redis clients, DNS backends) would otherwise be walked by every
    later collection: ~80,000 objects, ~45 ms here, spent holding the GIL while the
    next run waits to start. Once per kind, so whatever a concurrent run held at that
    moment can be kept from collection at most once, never run after run.
    """
    gc.collect()
    if after is not None and after not in _settled_after:
        _settled_after.add(after)
        gc.freeze()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def settle_heap(modules: Iterable[str] = RUN_PATH_MODULES) -> list[str]:
    """Import ``modules`` and freeze the heap so later full collections stay cheap.

    Call once at worker start-up, before any run starts: whatever is alive at that
    moment is never collected. Returns the modules that could not be imported (an
    optional part missing must not stop a worker from starting).
    """
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    gc.collect()
    gc.freeze()
    return missing


def limit_native_threads(threads: int = 1) -> None:
    """Cap BLAS/OpenMP thread pools at ``threads`` for this process.

    Sets the environment variables for libraries not loaded yet (an operator's own
    value wins) and limits the pools of libraries already loaded via threadpoolctl.
    """
    for var in NATIVE_THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, env only
        return
    import numpy  # noqa: F401  (load OpenBLAS so that its pool is limited now)

    try:
        limit = int(os.environ["OPENBLAS_NUM_THREADS"])
    except ValueError:
        limit = threads
    threadpool_limits(limits=max(limit, 1))
