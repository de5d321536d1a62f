"""An example SCEP plugin: ``example.noop``, a fault that changes nothing but says so.

It exercises the whole injector contract — validated parameters, a dry-run sentence, an
inject that returns a handle, an idempotent revert — which makes it useful to check that
an installation discovers plugins, and as a template for a real one.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from injectors.base import InjectionContext, Injector, Params

__all__ = ["NoopInjector", "NoopParams"]


class NoopParams(Params):
    message: str = Field(min_length=1, max_length=200, description="echoed in the handle")
    repeat: int = Field(default=1, ge=1, le=10)


class NoopInjector(Injector):
    name = "example.noop"
    family = "example"
    summary = "Does nothing; records who applied it (a plugin example)."
    params_model = NoopParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        return f"{self.name}: would do nothing on {ctx.target_name} ({params['message']!r})"

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        # The pid shows which process applied the fault: the target's agent.
        return {"echo": params["message"] * params["repeat"], "pid": os.getpid()}

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Nothing was changed, so nothing to undo; safe to call any number of times."""
