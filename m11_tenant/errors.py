"""The package's one exception tree.

Every error the package raises on purpose is a ``TenantConfigError``; callers can catch
that one class, or a branch of it::

    TenantConfigError
    ├── ConfigValidationError (also a ValueError)   user input refused: nothing was stored
    │   ├── InvalidTenantIdError                     tenant id outside the allowed pattern
    │   └── TemplateError                            prompt template or variable refused
    ├── ConfigNotFoundError (also a LookupError)     nothing stored for that tenant/version
    ├── VersionConflictError                         a write carried a stale version
    ├── TenantLockedError                            locked against platform bulk changes
    ├── PlatformOwnedFieldError                      a tenant tried to change a platform field
    ├── WeakAdminKeyError                            M11_ADMIN_KEY too short or too common
    ├── ServiceUnavailableError                      a backing service is down
    │   └── StoreUnavailableError                    the database is down: writes are refused
    ├── QueryRefusedError                            the RAG pipeline refused a query
    │   ├── QuotaExceededError                       daily query quota used up
    │   ├── BudgetExceededError                      monthly budget used up
    │   └── ModelUnavailableError                    no usable model (no key, retries failed)
    └── HttpError (m11_tenant.web.errors)            an HTTP-level refusal: auth, content
                                                     type, rate limit (the API and console)

``m11_tenant.web.errors.HTTP_ERRORS`` maps each class to its HTTP status and code.

Outside the tree, on purpose: a caller's misuse of a function (a negative clock step, a
malformed stored stamp) raises a plain ``ValueError`` or ``TypeError`` -- a bug to fix,
not input to report field by field -- and a broken installation (the embedding model's
file missing or altered) raises ``m11_tenant.minilm.EmbeddingModelError``, a
``RuntimeError``.

Messages are built only from the inputs, never from addresses or times, so notebook
outputs stay stable, and each says what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TenantConfigError(Exception):
    """Root of every error this package raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: where it is, what is wrong, what kind of problem."""

    field: str
    message: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


class ConfigValidationError(TenantConfigError, ValueError):
    """User input (a config, a body, a setting) was refused; nothing was stored. ``errors``
    lists each field and its problem. Not for a caller's misuse: that is a ``ValueError``."""

    def __init__(self, errors: list[FieldError] | FieldError, summary: str | None = None):
        self.errors: list[FieldError] = [errors] if isinstance(errors, FieldError) else list(errors)
        lines = [f"{e.field}: {e.message}" for e in self.errors]
        head = summary or f"{len(self.errors)} invalid field(s); nothing was stored"
        super().__init__(head + "".join(f"\n  - {line}" for line in lines))

    def as_dicts(self) -> list[dict[str, str]]:
        return [e.as_dict() for e in self.errors]


class InvalidTenantIdError(ConfigValidationError):
    """The tenant id does not match the documented pattern (or is reserved)."""

    def __init__(self, message: str):
        super().__init__(FieldError("tenant_id", message, "tenant_id"), "invalid tenant id")


class TemplateError(ConfigValidationError):
    """A prompt template or prompt variable was refused (syntax, unknown name, injection)."""

    def __init__(self, message: str, field: str = "prompt_template", type: str = "template"):
        super().__init__(FieldError(field, message, type), "prompt template refused")


class ConfigNotFoundError(TenantConfigError, LookupError):
    """Nothing is stored for this tenant (or this version of it)."""


class VersionConflictError(TenantConfigError):
    """A write carried the version it read, and the stored version has moved on since."""

    def __init__(self, tenant_id: str, expected: int, actual: int):
        self.tenant_id, self.expected, self.actual = tenant_id, expected, actual
        super().__init__(
            f"tenant {tenant_id!r} is at version {actual}, not {expected}: someone else "
            "changed it first. Reload the config, re-apply your change and try again."
        )


class TenantLockedError(TenantConfigError):
    """The tenant locked its config against platform bulk changes."""


class PlatformOwnedFieldError(TenantConfigError):
    """A tenant tried to change a field only the platform may set (``plan``); nothing was
    stored. ``errors`` names each field, like a validation error's."""

    def __init__(self, tenant_id: str, fields: list[str]):
        self.errors = [FieldError(name, f"{name} is set by the platform admin, not by the "
                                  "tenant; ask the platform to change it", "platform_owned")
                       for name in fields]
        super().__init__(f"tenant {tenant_id!r} may not change {', '.join(fields)}: only the "
                         "platform admin may; nothing was stored")

    def as_dicts(self) -> list[dict[str, str]]:
        return [e.as_dict() for e in self.errors]


class WeakAdminKeyError(TenantConfigError):
    """The configured admin key is too weak to guard every tenant; the server won't start."""


class ServiceUnavailableError(TenantConfigError):
    """A backing service (database, cache, model provider) cannot be reached."""


class StoreUnavailableError(ServiceUnavailableError):
    """The database cannot be reached. Reads fall back to the cache; writes are refused."""


class QueryRefusedError(TenantConfigError):
    """The RAG pipeline refused to run a query for this tenant."""

    def __init__(self, message: str, *, retry_after: int | None = None, detail: Any = None):
        self.retry_after, self.detail = retry_after, detail
        super().__init__(message)


class QuotaExceededError(QueryRefusedError):
    """The tenant has used its daily query quota."""


class BudgetExceededError(QueryRefusedError):
    """The tenant has spent its monthly budget."""


class ModelUnavailableError(QueryRefusedError):
    """No usable model: the provider has no key here, or every retry and fallback failed."""
