"""Controls: a placebo fault that goes through every step of a run and changes nothing.

Running placebos next to real faults is how the analysis's false-finding rate is
measured (``benchmarks/detection.py``), and how a team checks that its steady state is
steady enough to judge before faulting anything.
"""

from __future__ import annotations

from typing import Any

from injectors.base import InjectionContext, Injector, Params


class PlaceboParams(Params):
    note: str = ""


class PlaceboInjector(Injector):
    name = "control.placebo"
    family = "control"
    summary = "A sham fault: ledger row, inject and revert as usual, nothing changed."
    params_model = PlaceboParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        return f"change nothing on target {ctx.target_name!r} (placebo control)"

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        return {"placebo": True}

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        return None
