"""scep_flags: failure flags for applications, driven by SCEP ``code.flag`` experiments.

Stdlib only (the ``django``, ``requests`` and ``httpx`` integrations import their library
when used). Configure once, then mark call sites::

    import scep_flags
    from scep_flags import failure_flag

    scep_flags.configure("http://scep:8000", token="...", app_labels={"service": "shop"})

    with failure_flag("checkout.charge", labels={"region": "eu"}) as flag:
        receipt = flag.response if flag.has_response else charge(order)

With no configuration, or when the platform cannot be read, no flag is ever active.
"""

from __future__ import annotations

from scep_flags._client import Flag, FlagsClient
from scep_flags._flag import (
    FailureFlagError,
    FlagOutcome,
    configure,
    decide,
    failure_flag,
    get_client,
    reset,
)

__all__ = [
    "FailureFlagError",
    "Flag",
    "FlagOutcome",
    "FlagsClient",
    "configure",
    "decide",
    "failure_flag",
    "get_client",
    "reset",
]
