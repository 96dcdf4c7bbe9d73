"""Live model providers behind one small interface: OpenAI, Anthropic, OpenAI-compatible.

A :class:`Generator` turns a rendered prompt into a :class:`~m11_tenant.rag.generate.Generation`
with one call to a provider, through that provider's official async SDK. One call is one
attempt: the SDKs' own retries are switched off (``max_retries=0``) because the pipeline owns
retries, backoff and fallbacks (the tenant's ``max_retries`` and ``fallback_model``). Every
failure is raised as :class:`~m11_tenant.rag.generate.GenerationFailed`, which says whether
trying again may help, decided from the SDKs' typed errors:

==========================================  =========  ======================================
error                                        retried    why
==========================================  =========  ======================================
connection error, timeout                    yes        the network or the server was busy
408, 409, 429 (honouring ``Retry-After``)    yes        the provider asks to come back later
5xx (500, 502, 503, 529 overloaded …)        yes        the provider's own trouble
a reply that is not the API's JSON           yes        a proxy cut the reply, usually
400, 401, 403, 404, 422 …                    no         the same request fails the same way
==========================================  =========  ======================================

Which providers are live comes from :class:`~m11_tenant.settings.Settings` (environment or
``.env``): ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY`` /
``ANTHROPIC_BASE_URL``, ``OPENAI_COMPATIBLE_BASE_URL`` / ``OPENAI_COMPATIBLE_API_KEY``. The
catalog (``data/models.json``) maps each model name to a provider and its API model name.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import anthropic
import openai

from m11_tenant.rag.blocking import close_at_exit, is_background_loop
from m11_tenant.rag.generate import Generation, GenerationFailed
from m11_tenant.schema import PROVIDERS
from m11_tenant.settings import Settings

#: Anthropic's API accepts temperatures 0–1; a tenant's config allows 0–2 (OpenAI's range).
ANTHROPIC_MAX_TEMPERATURE = 1.0
#: A local server (Ollama, vLLM) ignores the key, but the SDK refuses to start without one.
KEY_NOT_NEEDED = "not-needed"

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_SDK_ERRORS = (openai.OpenAIError, anthropic.AnthropicError)


class Generator(Protocol):
    """One provider: ``generate`` makes one attempt and raises ``GenerationFailed``."""

    provider: str

    async def generate(self, prompt: str, *, api_model: str, temperature: float,
                       max_tokens: int) -> Generation: ...

    async def aclose(self) -> None:
        """Close the client's connections (on the loop that opened them)."""


class OpenAIChat:
    """Chat completions through ``openai.AsyncOpenAI`` (OpenAI, or any compatible server)."""

    def __init__(self, client: openai.AsyncOpenAI, provider: str = "openai"):
        self.client, self.provider = client, provider

    async def aclose(self) -> None:
        await self.client.close()

    async def generate(self, prompt: str, *, api_model: str, temperature: float,
                       max_tokens: int) -> Generation:
        try:
            resp = await self.client.chat.completions.create(
                model=api_model, messages=[{"role": "user", "content": prompt}],
                temperature=temperature, max_tokens=max_tokens)
            text = resp.choices[0].message.content or ""
        except Exception as exc:
            raise failure(exc) from exc
        usage = resp.usage
        if usage is None:
            return Generation(text, None, None, True)
        return Generation(text, usage.prompt_tokens, usage.completion_tokens, False)


class AnthropicMessages:
    """Messages through ``anthropic.AsyncAnthropic``; ``temperature`` is capped at 1.0.

    The SDK's ``messages.create`` (2.x) has no ``temperature`` argument any more; the
    Messages API still takes it for the catalog's models, so it travels in ``extra_body``.
    """

    provider = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic):
        self.client = client

    async def aclose(self) -> None:
        await self.client.close()

    async def generate(self, prompt: str, *, api_model: str, temperature: float,
                       max_tokens: int) -> Generation:
        try:
            resp = await self.client.messages.create(
                model=api_model, messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                extra_body={"temperature": min(temperature, ANTHROPIC_MAX_TEMPERATURE)})
            text = "".join(block.text for block in resp.content if block.type == "text")
        except Exception as exc:
            raise failure(exc) from exc
        return Generation(text, resp.usage.input_tokens, resp.usage.output_tokens, False)


def failure(exc: BaseException) -> GenerationFailed:
    """Translate an SDK error (or our own timeout) into one attempt's failure."""
    name = type(exc).__name__
    if isinstance(exc, (openai.APIStatusError, anthropic.APIStatusError)):
        status = exc.status_code
        retryable = status in _RETRYABLE_STATUS or status >= 500
        return GenerationFailed(f"{name} (HTTP {status}): {_first_line(exc)}",
                                retryable=retryable,
                                retry_after=retry_after_seconds(exc.response.headers))
    if isinstance(exc, TimeoutError):
        return GenerationFailed(f"timed out: {exc}", retryable=True)
    if isinstance(exc, (openai.APIConnectionError, anthropic.APIConnectionError,
                        openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return GenerationFailed(f"{name}: {_first_line(exc)}", retryable=True)
    if isinstance(exc, ValueError):  # the SDK could not decode the reply as JSON
        return GenerationFailed(f"malformed reply ({name}): {_first_line(exc)}", retryable=True)
    # Anything else from an SDK (a client-side usage error) fails the same way every time.
    return GenerationFailed(f"{name}: {_first_line(exc)}",
                            retryable=not isinstance(exc, _SDK_ERRORS))


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``retry-after-ms``, else ``Retry-After`` in seconds or as an HTTP date; else None."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"


class Providers:
    """The generators the settings enable, one set of SDK clients per event loop.

    An async SDK client keeps a connection pool bound to the loop that opened it, so the
    server's loop and the loop behind the synchronous API (notebooks, the CLI) each get
    their own clients; a loop's clients go away with it.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
            weakref.WeakKeyDictionary())

    @property
    def configured(self) -> tuple[str, ...]:
        """Providers with a key or a base URL, in catalog order."""
        s = self.settings
        enabled = {"openai": bool(s.openai_api_key or s.openai_base_url),
                   "anthropic": bool(s.anthropic_api_key or s.anthropic_base_url),
                   "openai_compatible": bool(s.openai_compatible_base_url)}
        return tuple(p for p in PROVIDERS if enabled[p])

    def get(self, provider: str) -> Generator:
        """The generator for ``provider`` on the running loop; ``GenerationFailed`` (not
        retryable) naming the setting to add when it is not configured."""
        if provider not in self.configured:
            raise GenerationFailed(f"provider {provider!r} is not configured here "
                                   f"(set {_HOW_TO_ENABLE.get(provider, 'a known provider')})",
                                   retryable=False)
        loop = asyncio.get_running_loop()
        if loop not in self._by_loop and is_background_loop(loop):
            close_at_exit(self.aclose)
        clients = self._by_loop.setdefault(loop, {})
        if provider not in clients:
            clients[provider] = self._build(provider)
        return clients[provider]

    async def aclose(self) -> None:
        """Close the running loop's clients (the server does this when it shuts down)."""
        for generator in self._by_loop.pop(asyncio.get_running_loop(), {}).values():
            await generator.aclose()

    def _build(self, provider: str) -> Generator:
        s = self.settings
        # The pipeline times each attempt itself; the SDK's timeout is a backstop. The SDKs'
        # aiohttp transport: about half the CPU per call of their default httpx pool, which
        # matters when one worker has hundreds of calls in flight (bench/live_concurrency.py).
        common: dict[str, Any] = {"max_retries": 0, "timeout": s.m11_model_timeout + 1}
        if provider == "anthropic":
            common["http_client"] = anthropic.DefaultAioHttpClient()
        else:
            common["http_client"] = openai.DefaultAioHttpClient()
        if provider == "anthropic":
            return AnthropicMessages(anthropic.AsyncAnthropic(
                api_key=s.anthropic_api_key or KEY_NOT_NEEDED, base_url=s.anthropic_base_url,
                **common))
        if provider == "openai":
            return OpenAIChat(openai.AsyncOpenAI(
                api_key=s.openai_api_key or KEY_NOT_NEEDED, base_url=s.openai_base_url,
                **common))
        return OpenAIChat(openai.AsyncOpenAI(
            api_key=s.openai_compatible_api_key or KEY_NOT_NEEDED,
            base_url=s.openai_compatible_base_url, **common), provider="openai_compatible")


_HOW_TO_ENABLE = {
    "openai": "OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": "OPENAI_COMPATIBLE_BASE_URL",
}
