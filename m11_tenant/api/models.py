"""Every request and response body of the API, declared once.

The routes parse their bodies with these request models (after the strict JSON parser,
:func:`m11_tenant.web.body.read_json`, has refused duplicate keys, NaN, deep nesting and
text outside the policy) and return these response models, so ``/docs``, the OpenAPI
schema that schemathesis fuzzes, and the code are the same classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.model import TenantConfig, shown_input
from m11_tenant.rag.pipeline import MAX_QUESTION_CHARS, QueryResult
from m11_tenant.rag.replay import MAX_REPLAY
from m11_tenant.repository import ResolvedConfig
from m11_tenant.store import AuditEntry
from m11_tenant.text import MAX_REASON_CHARS, TEXT_POLICY, reason_problem

# The tenant-id pattern, documented on path parameters (it guides fuzzers too) but enforced
# by validate_tenant_id, whose 400 names the rule and also refuses the reserved ids.
TENANT_ID_DOC = {"pattern": "^[a-z0-9][a-z0-9_-]{2,63}$"}


def _valid_reason(reason: str) -> str:
    found = reason_problem(reason)
    if found is not None:
        raise PydanticCustomError(found[1], "{problem}", {"problem": found[0]})
    return reason


#: A reason as the API takes it (bodies and ``?reason=``): the rule of
#: :func:`m11_tenant.text.reason_problem`, with its cap in the documented schema.
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS,
                              description="why, for the audit log (one line)"),
                   AfterValidator(_valid_reason)]
EXAMPLE_CONFIG = {"model": "gpt-4", "temperature": 0.5, "top_k": 10, "plan": "pro"}


class _SchemaOf:
    """Annotated metadata: document a field with ``model``'s schema and ``description``
    while it is validated as the annotated type (the schema cannot drift from the model)."""

    def __init__(self, model: type[BaseModel], description: str):
        self.model, self.description = model, description

    def __get_pydantic_json_schema__(self, _core: Any, handler: GetJsonSchemaHandler
                                     ) -> dict[str, Any]:
        return {"allOf": [handler(self.model.__pydantic_core_schema__)],
                "description": self.description}


#: The ``config`` of a write: some fields of :class:`TenantConfig`, parsed as an object here
#: and validated by the repository against the tenant's current config (a merge can only be
#: judged merged: ``rerank_top_n`` against the stored ``top_k``, the model against the plan).
ConfigFields = Annotated[dict[str, Any], _SchemaOf(
    TenantConfig, "some fields of TenantConfig. With merge=true (the default) only the fields "
    "given change (inside branding, only the keys given) and every other field keeps its "
    "current value; with merge=false the fields not given go back to their defaults. The "
    "defaults shown are what a replacement falls back to, not what a merge writes.")]


# ---- requests --------------------------------------------------------------------------
class RequestModel(BaseModel):
    """A JSON body: exact JSON types (``"0.7"`` is not a number, ``1`` is not ``true``) and
    no unknown fields (a typo must not fall back silently to a default)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Self:
        """The body (already parsed by the strict JSON parser) as this model.

        Raises:
            ConfigValidationError: listing every wrong field (422).
        """
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise ConfigValidationError(
                [cls._field_error(e) for e in exc.errors(include_url=False)]) from None

    @classmethod
    def _field_error(cls, err: ErrorDetails) -> FieldError:
        loc = err["loc"]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}; allowed: {', '.join(cls.model_fields)}"
        elif err["type"] == "missing":
            message = "field required"
        elif err["type"] == TEXT_POLICY:  # the message says where; the text is not echoed
            message = err["msg"]
        else:
            message = f"{err['msg']} (got {shown_input(err['input'])})"
        return FieldError(field or "body", message, err["type"])


class ConfigUpdateRequest(RequestModel):
    """``POST /config/{tenant_id}``: the original module's body, plus an optional reason."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"config": EXAMPLE_CONFIG, "merge": True, "reason": "upgrade to pro"}]})
    config: ConfigFields
    merge: bool = Field(True, description="true: partial update; false: full replacement")
    reason: Reason | None = None


class PreviewRequest(ConfigUpdateRequest):
    """``POST /config/{tenant_id}/preview``: a proposed change and a sample question."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"config": {"temperature": 0.2, "top_k": 8}, "merge": True,
                      "query": "How do I roll back a tenant's config?"}]})
    query: str | None = Field(None, description=f"sample question, at most "
                              f"{MAX_QUESTION_CHARS} characters (default: a fixed one)")
    replay: int | None = Field(None, ge=1, le=MAX_REPLAY, description="also re-run this "
                               "many of the tenant's newest logged questions under both configs")
    live: bool = Field(False, description="replay with the live providers (default: the "
                       "offline generator, which costs nothing)")


class QueryRequest(RequestModel):
    """``POST /query``: the original module's body."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"tenant_id": "startup-co", "query": "What is hybrid search?"}]})
    tenant_id: str = Field(description="a tenant id (3-64 of a-z 0-9 _ -)")
    query: str = Field(description=f"the question, 1-{MAX_QUESTION_CHARS} characters")


class LockRequest(RequestModel):
    """``PUT /config/{tenant_id}/lock``: lock or unlock against platform bulk changes."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"locked": True, "reason": "quarter-end freeze"}]})
    locked: bool
    reason: Reason | None = None


MAX_BULK_TENANTS = 1000


class BulkRequest(RequestModel):
    """``POST /tenants/bulk``: one change applied to many tenants; locked ones are skipped."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"config": {"max_retries": 3}, "merge": True,
                      "tenants": ["startup-co", "enterprise-corp"],
                      "reason": "platform-wide retry policy"}]})
    config: ConfigFields
    merge: bool = True
    tenants: list[str] | None = Field(None, max_length=MAX_BULK_TENANTS,
                                      description="default: every tenant with a stored config")
    reason: Reason | None = None


#: The bodies the routes parse themselves (see :func:`body_doc`).
REQUEST_MODELS: tuple[type[RequestModel], ...] = (
    ConfigUpdateRequest, PreviewRequest, QueryRequest, LockRequest, BulkRequest)


# ---- responses -------------------------------------------------------------------------
class ErrorItem(BaseModel):
    field: str
    message: str
    type: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str = Field(description="what went wrong and what to do next")
    fields: list[ErrorItem] = Field(description="field-level problems (may be empty)")


class ErrorResponse(BaseModel):
    """Every error has this shape."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"error": {
        "code": "validation_error", "message": "1 invalid field(s); nothing was stored",
        "fields": [{"field": "temperature", "message": "Input should be less than or equal "
                    "to 2 (got 3.5)", "type": "less_than_equal"}]}}]})
    error: ErrorDetail


class ConfigResponse(BaseModel):
    """A tenant's effective config; the ``ETag`` header carries ``version``."""

    tenant_id: str
    config: TenantConfig = Field(description="the full effective config")
    version: int = Field(description="0 when the tenant runs on the defaults")
    source: str = Field(description="near, cache, database, last_known_good or defaults")
    degraded: bool
    updated_at: str | None
    updated_by: str | None

    @classmethod
    def of(cls, resolved: ResolvedConfig) -> ConfigResponse:
        return cls(tenant_id=resolved.tenant_id, config=resolved.config,
                   version=resolved.version, source=resolved.source,
                   degraded=resolved.degraded, updated_at=resolved.updated_at,
                   updated_by=resolved.updated_by)


class DeleteResponse(BaseModel):
    tenant_id: str
    deleted: bool = True
    version: int = Field(0, description="the tenant now runs on the defaults (ETag \"0\")")


class TenantsResponse(BaseModel):
    tenants: list[str]
    count: int = Field(description="all tenants with a stored config")
    limit: int
    offset: int


class HistoryItem(BaseModel):
    version: int
    config: dict[str, Any]
    created_at: str
    created_by: str
    action: str


class HistoryResponse(BaseModel):
    tenant_id: str
    versions: list[HistoryItem] = Field(description="newest first, the current one included")


class AuditResponse(BaseModel):
    entries: list[AuditEntry] = Field(description='newest first; diff is {"field": [old, new]}')
    limit: int
    offset: int


class ReplayQuestion(BaseModel):
    question: str = Field(description="as logged (redacted)")
    sources_before: list[str]
    sources_after: list[str]
    sources_gained: list[str]
    sources_lost: list[str]
    source_overlap: float = Field(description="|before ∩ after| / |before ∪ after|")
    answer_changed: bool
    tokens_before: int
    tokens_after: int
    cost_before_usd: float
    cost_after_usd: float


class ReplaySummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    replayed: int
    sources_changed_share: float
    mean_source_overlap: float
    cost_delta_usd: float
    projected_monthly_cost_delta_usd: float = Field(
        description="mean delta per question x the logged traffic rate x 30 (capped by the "
        "plan's daily quota)")


class ReplayReport(BaseModel):
    generator: str = Field(description="offline (default) or live")
    questions: list[ReplayQuestion]
    summary: ReplaySummary


class PreviewResponse(BaseModel):
    tenant_id: str
    config: TenantConfig = Field(description="the config the change would produce")
    diff: dict[str, Any] = Field(description='{"field": [current, proposed]}')
    current_version: int
    result: QueryResult
    written: bool = Field(False, description="always false: a preview stores nothing")
    replay: ReplayReport | None = Field(None, description="only when the body asks for it")


class ExplainField(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: Any
    default: Any
    source: str = Field(description="default or set (then set_by, version, at, action, reason)")
    who_may_change: str
    plan_limit: str | None
    at_plan_cap: bool


class ExplainResponse(BaseModel):
    tenant_id: str
    version: int
    plan: dict[str, Any]
    fields: dict[str, ExplainField]
    forbidden_for_tenant: list[str] = Field(description="fields only the platform admin sets")


class QueryLogEntry(BaseModel):
    at: str
    question: str = Field(description="e-mail addresses and long digit runs redacted")
    source_ids: list[str]
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class QueryLogResponse(BaseModel):
    tenant_id: str
    query_log_size: int
    entries: list[QueryLogEntry] = Field(description="newest first")


class QueryLogDeleted(BaseModel):
    tenant_id: str
    deleted: int = Field(description="how many logged questions were deleted")


class KeyResponse(BaseModel):
    tenant_id: str
    key_id: str
    key: str = Field(description="shown once; only its hash is stored")


class KeyInfo(BaseModel):
    key_id: str
    status: str = Field(description="active, ending (a rotated key in its grace period) or "
                        "revoked")
    created_at: str
    created_by: str
    last_used_at: str | None = Field(None, description="updated at most once a minute")
    revoked_at: str | None = Field(None, description="when the key stops (or stopped) working")
    revoked_by: str | None = None


class KeysResponse(BaseModel):
    tenant_id: str
    keys: list[KeyInfo] = Field(description="oldest first; never the key itself")


class KeyRevokedResponse(BaseModel):
    tenant_id: str
    key: KeyInfo
    changed: bool = Field(description="false when the key was already revoked")


class KeyRotatedResponse(KeyResponse):
    replaces: KeyInfo = Field(description="the old key, ending at its revoked_at")


class LockResponse(BaseModel):
    tenant_id: str
    locked: bool
    changed: bool = Field(False, description="false when it already was in that state")


class BulkItem(BaseModel):
    tenant_id: str
    version: int | None = None
    reason: str | None = None
    only: list[str] | None = Field(None, description="a locked tenant: only these "
                                   "platform-owned fields (plan) were applied")


class BulkResponse(BaseModel):
    """All or nothing: a bad tenant id, or a tenant the change is invalid for, fails the
    whole request with a 422 naming it, and nothing is stored."""

    updated: list[BulkItem]
    skipped: list[BulkItem] = Field(description="tenants locked against bulk changes (a "
                                    "plan change still applies to them: see `only`)")


class HealthResponse(BaseModel):
    status: str = Field(description="ok or degraded")
    services: dict[str, str] = Field(description="/health: ok or degraded per service; "
                                     "/health/detail (admin): the error text too")
    detail: dict[str, Any] | None = Field(
        None, description="/health/detail only: figures behind the services (a region's "
        "replication state and lag)")


# ---- route documentation helpers -------------------------------------------------------
_ERROR_TEXT = {
    400: "malformed JSON, a malformed tenant id in the path, or a bad If-Match header",
    401: "missing or unknown API key",
    403: "a tenant key used on another tenant, or on an admin-only endpoint (audited)",
    404: "nothing stored (or that version is no longer kept)",
    409: "the tenant locked its config against platform bulk changes",
    412: "If-Match names a stale version: reload, re-apply, retry",
    413: "request body over the size limit",
    415: "body is not application/json",
    422: "well-formed but invalid: the fields list says what is wrong",
    429: "rate limit, daily quota or monthly budget used up (see Retry-After)",
    503: "the database (writes) or the model provider is unavailable",
}


def body_doc(model: type[RequestModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses its JSON body itself, with ``model``.

    Not a FastAPI body parameter: FastAPI would read and decode the body (``json.loads``:
    NaN, duplicate keys) before the route has authenticated the caller and checked its
    tenant, so 401/403/429 would turn into 400/422. The app adds ``REQUEST_MODELS`` to the
    schema's components for these references.
    """
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def error_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": _ERROR_TEXT[s]}
            for s in (401, *statuses)}
