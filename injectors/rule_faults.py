"""The life cycle shared by every fault that is "one rule on a listener the agent hosts"
(network, HTTP and DNS faults): build the rule from the params, make sure the listener is
up, install the rule, and on revert remove it again.

The rule carries the fault's ``expires_at``, so even a revert that never arrives cannot
leave the fault in place; removing a rule is idempotent and tolerates a listener that is
gone (after an agent restart the rule died with the old process anyway).
"""

from __future__ import annotations

from typing import Any, ClassVar

from injectors.base import InjectionContext, InjectionError, Injector
from injectors.listener import ProxyError

__all__ = ["RuleFaultInjector"]


class RuleFaultInjector(Injector):
    """Subclasses say where the listener's manager lives and how to build their rule."""

    kind: ClassVar[str]
    #: attribute of the agent runtime holding the manager, e.g. ``"proxies"``
    runtime_attr: ClassVar[str]
    #: what the manager is, for the error raised outside an agent, e.g. "a ProxyManager"
    manager_label: ClassVar[str]
    #: the rule class the manager expects
    rule_class: ClassVar[type]
    #: how errors name the rule, e.g. "proxy rule"
    rule_label: ClassVar[str]
    #: key of the listener's name in the returned handle (stored in the ledger)
    handle_key: ClassVar[str] = "proxy"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """Kind-specific rule fields taken from the params."""
        return {}

    def match_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """Which traffic the rule applies to (direction, request match, query names)."""
        return {}

    def listener(self, params: dict[str, Any], ctx: InjectionContext) -> tuple[str, dict, str]:
        """(manager key, config entry with ``listen``/``upstream``, name used in errors)."""
        raise NotImplementedError

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        params = self.validate(params, ctx.target_config)
        manager = self._manager(ctx)
        key, spec, label = self.listener(params, ctx)
        try:
            rule = self.rule_class(
                id=f"fault-{ctx.fault_id}",
                kind=self.kind,
                share=ctx.intensity,
                expires_at=ctx.expires_at,
                **self.match_fields(params),
                **self.rule_fields(params),
            )
        except ValueError as exc:
            raise InjectionError(f"cannot build the {self.rule_label}: {exc}") from None
        try:
            manager.ensure_proxy(key, spec["listen"], spec["upstream"])
            manager.set_rule(key, rule)
        except KeyError as exc:
            raise InjectionError(f"{label} in the target config lacks {exc}") from None
        except ProxyError:
            raise
        except Exception as exc:  # a timeout or loop failure: surface it as a fault error
            raise InjectionError(f"could not apply the rule on {label}: {exc}") from exc
        return {self.handle_key: key, "rule_id": rule.id}

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        self._manager(ctx).remove_rule(handle[self.handle_key], handle["rule_id"])

    def _manager(self, ctx: InjectionContext) -> Any:
        manager = getattr(ctx.runtime, self.runtime_attr, None)
        if manager is None:
            raise InjectionError(
                f"{self.family} faults run inside the target's agent: "
                f"ctx.runtime.{self.runtime_attr} ({self.manager_label}) is missing"
            )
        return manager
