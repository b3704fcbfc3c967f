"""Who may do what: roles, the one table of operations and their minimal role, and `require`.

Every route (FastAPI or a pure-ASGI fast path) names its operation; `require(caller, operation)` is the only
place a role is compared. ROUTES maps each (method, path template) to its operation, so a route with no entry
is caught by a test and refused at run time to anyone but an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from core.errors import Forbidden
from core.models import DEFAULT_NAMESPACE


class Role(IntEnum):
    """The roles, each allowed everything the one below it is."""

    viewer = 1
    invoker = 2
    developer = 3
    admin = 4


ROLE_NAMES = tuple(r.name for r in Role)


@dataclass(frozen=True)
class Caller:
    """Who is calling: their key, its tenant (the namespace of everything they own) and its role."""

    namespace: str
    role: Role = Role.admin
    key_id: int | None = None
    key_name: str = ""

    @property
    def is_admin(self) -> bool:
        """Whether the key manages its tenant's keys."""
        return self.role is Role.admin

    @property
    def is_operator(self) -> bool:
        """The default tenant's admin: manages every tenant."""
        return self.role is Role.admin and self.namespace == DEFAULT_NAMESPACE


# operation -> the least role allowed to perform it ("read results" = task records, logs and inputs)
OPERATIONS: dict[str, Role] = {
    "whoami.read": Role.viewer,
    "functions.read": Role.viewer,
    "metrics.read": Role.viewer,
    "anomalies.read": Role.viewer,
    "rules.read": Role.viewer,
    "alerts.read": Role.viewer,
    "pipelines.read": Role.viewer,
    "silences.read": Role.viewer,
    "functions.invoke": Role.invoker,
    "pipelines.invoke": Role.invoker,
    "tasks.read": Role.invoker,
    "tasks.cancel": Role.invoker,
    "functions.deploy": Role.developer,
    "functions.activate": Role.developer,
    "functions.deactivate": Role.developer,
    "functions.rollback": Role.developer,
    "functions.delete": Role.developer,
    "functions.env": Role.developer,
    "functions.env.read": Role.developer,
    "pipelines.write": Role.developer,
    "tasks.resume": Role.developer,
    "tasks.redrive": Role.developer,
    "rules.write": Role.developer,
    "anomalies.feedback": Role.developer,
    "silences.write": Role.developer,
    "alerts.ack": Role.developer,
    "keys.read": Role.admin,
    "keys.write": Role.admin,
    "tenants.read": Role.admin,
    "tenants.write": Role.admin,
    "quotas.read": Role.admin,  # a tenant's admins, their own tenant's
    "quotas.write": Role.admin,  # the operator only (the route checks it)
    "audit.read": Role.admin,
}

# (HTTP method, route path template) -> operation; GET /healthz is the only route without a key
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/functions"): "functions.deploy",
    ("GET", "/v1/functions"): "functions.read",
    ("GET", "/v1/functions/{name}"): "functions.read",
    ("GET", "/v1/functions/{name}/versions"): "functions.read",
    ("POST", "/v1/functions/{name}/activate"): "functions.activate",
    ("POST", "/v1/functions/{name}/deactivate"): "functions.deactivate",
    ("POST", "/v1/functions/{name}/rollback"): "functions.rollback",
    ("PUT", "/v1/functions/{name}/env"): "functions.env",
    ("GET", "/v1/functions/{name}/env"): "functions.env.read",
    ("DELETE", "/v1/functions/{name}"): "functions.delete",
    ("POST", "/v1/functions/{name}/invocations"): "functions.invoke",
    ("GET", "/v1/functions/{name}/metrics"): "metrics.read",
    ("GET", "/v1/functions/{name}/timeseries"): "metrics.read",
    ("GET", "/v1/metrics"): "metrics.read",
    ("GET", "/metrics"): "metrics.read",
    ("GET", "/v1/tasks"): "tasks.read",
    ("GET", "/v1/tasks/{task_id}"): "tasks.read",
    ("GET", "/v1/tasks/{task_id}/logs"): "tasks.read",
    ("POST", "/v1/tasks/lookup"): "tasks.read",
    ("POST", "/v1/tasks/{task_id}/cancel"): "tasks.cancel",
    ("POST", "/v1/tasks/{task_id}/resume"): "tasks.resume",
    ("GET", "/v1/dead-letters"): "tasks.read",
    ("POST", "/v1/dead-letters/{task_id}/redrive"): "tasks.redrive",
    ("POST", "/v1/pipelines"): "pipelines.write",
    ("GET", "/v1/pipelines/{name}"): "pipelines.read",
    ("POST", "/v1/pipelines/{name}/invocations"): "pipelines.invoke",
    ("GET", "/v1/anomalies"): "anomalies.read",
    ("POST", "/v1/anomalies/{anomaly_id}/feedback"): "anomalies.feedback",
    ("POST", "/v1/alert-rules"): "rules.write",
    ("GET", "/v1/alert-rules"): "rules.read",
    ("DELETE", "/v1/alert-rules/{rule_id}"): "rules.write",
    ("GET", "/v1/alerts"): "alerts.read",
    ("GET", "/v1/alert-notifications"): "alerts.read",
    ("POST", "/v1/alerts/{alert_id}/ack"): "alerts.ack",
    ("POST", "/v1/silences"): "silences.write",
    ("GET", "/v1/silences"): "silences.read",
    ("DELETE", "/v1/silences/{silence_id}"): "silences.write",
    ("POST", "/v1/tenants"): "tenants.write",
    ("GET", "/v1/tenants"): "tenants.read",
    ("GET", "/v1/tenants/{name}/quotas"): "quotas.read",
    ("PUT", "/v1/tenants/{name}/quotas"): "quotas.write",
    ("POST", "/v1/keys"): "keys.write",
    ("GET", "/v1/keys"): "keys.read",
    ("DELETE", "/v1/keys/{key_id}"): "keys.write",
    ("POST", "/v1/keys/{key_id}/rotate"): "keys.write",
    ("GET", "/v1/audit"): "audit.read",
    ("GET", "/v1/whoami"): "whoami.read",
}
UNLISTED = "unlisted"  # a route missing from ROUTES: refused to all but admins (fail closed)


def operation_of(method: str, path_template: str) -> str:
    """The operation a route performs (UNLISTED if the table does not name it)."""
    return ROUTES.get((method.upper(), path_template), UNLISTED)


def role_needed(operation: str) -> Role:
    """The least role allowed to perform an operation."""
    return OPERATIONS.get(operation, Role.admin)


def require(caller: Caller, operation: str) -> None:
    """Refuse (Forbidden, HTTP 403) a caller whose role is below the operation's; otherwise return."""
    needed = role_needed(operation)
    if caller.role < needed:
        raise Forbidden(f"{operation} needs the {needed.name} role (or higher); this key "
                        f"{caller.key_name or caller.key_id!r} has the {caller.role.name} role",
                        detail={"operation": operation, "role_needed": needed.name, "role": caller.role.name})


def parse_role(value: object) -> Role:
    """A role from its name."""
    if isinstance(value, str) and value in ROLE_NAMES:
        return Role[value]
    raise ValueError(f"role must be one of {', '.join(ROLE_NAMES)}, not {value!r}")
