"""HTTP plumbing shared by the upstream backends: the client, capped fetches, retries, checks.

Every failure of the upstream conversation becomes an ApiError here, saying what upstream
did, with the credential scrubbed from any text that upstream sent back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import certifi
import httpx2

from server.errors import InvalidInputImage, Overloaded, UpstreamFailed, UpstreamTimeout
from server.media.decode import ImageLimits, open_image
from server.media.encode import encode_image
from server.media.formats import FORMAT_OF_PIL, ImageFormat
from server.settings import Settings, is_loopback
from server.wire.answers import json_object, media_type, retry_after_seconds

log = logging.getLogger(__name__)

#: Upstream error text quoted back to the client is cut to this many characters.
MAX_ERROR_TEXT = 500


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificate checks against certifi's CAs plus upstream_ca_file (read now: a bad file
    fails at startup, not on the first job)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if settings.upstream_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.upstream_ca_file))
    return context


def warn_if_plaintext(url: str) -> None:
    """Say loudly, once per forwarder, that the credential will cross plain HTTP (allowed
    only to loopback, or with --upstream-allow-plaintext; the settings refuse the rest)."""
    parsed = httpx2.URL(url)
    if parsed.scheme == "http":
        where = "this machine" if is_loopback(parsed.host) else "THE NETWORK, UNENCRYPTED"
        log.warning("UPSTREAM OVER PLAIN HTTP: the upstream credential is sent to %s over "
                    "http:// (to %s)", parsed.host, where)


def make_client(settings: Settings, context: ssl.SSLContext) -> httpx2.AsyncClient:
    """The one upstream client of a forwarder: no redirects followed, no proxies from env."""
    # trust_env=False: proxy variables or ~/.netrc must not reroute or decorate our requests.
    return httpx2.AsyncClient(verify=context, trust_env=False, follow_redirects=False,
                             timeout=settings.upstream_timeout)


@dataclass(frozen=True)
class Fetched:
    """A whole upstream answer, read under the size cap."""

    status: int
    headers: httpx2.Headers
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters."""
        return media_type(self.headers.get("content-type"))


class Scrubber:
    """Removes a credential from text that came from upstream before anyone sees it."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    def __call__(self, text: str) -> str:
        """`text`, credential replaced, cut to MAX_ERROR_TEXT characters."""
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 3] + "..."


class TransportFailed(UpstreamFailed):
    """The conversation broke (connection refused or reset, a cut answer): an idempotent
    request may be sent again."""


def _refuse_declared(response: httpx2.Response, cap: int, who: str) -> None:
    """UpstreamFailed before a byte is read when the answer declares more than `cap`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise UpstreamFailed(f"{who} declared a {int(declared)}-byte answer, over the "
                             f"{cap}-byte limit (upstream_max_bytes); not read")


async def fetch(client: httpx2.AsyncClient, request: httpx2.Request, cap: int,
                who: str) -> Fetched:
    """Send `request` and read its whole body, refusing bodies over `cap` bytes (a declared
    size over it before reading any)."""
    try:
        response = await client.send(request, stream=True)
        try:
            _refuse_declared(response, cap, who)
            # One buffer, grown in place: thousands of small chunks alive at once would
            # scatter over the heap, which then cannot be given back to the system.
            body = bytearray()
            async for chunk in response.aiter_bytes():
                if len(body) + len(chunk) > cap:
                    raise UpstreamFailed(f"{who} sent more than the {cap}-byte limit")
                body += chunk
        finally:
            await response.aclose()
    except httpx2.TimeoutException as exc:
        raise UpstreamTimeout(f"{who} did not answer in time ({type(exc).__name__})") from exc
    except httpx2.TransportError as exc:
        raise TransportFailed(f"{who} failed: {type(exc).__name__}: {exc}") from exc
    except httpx2.HTTPError as exc:
        raise UpstreamFailed(f"{who} failed: {type(exc).__name__}: {exc}") from exc
    return Fetched(response.status_code, response.headers, bytes(body))


def retry_after(headers: httpx2.Headers, default: int = 1) -> int:
    """Whole seconds (at least 1) from a Retry-After header; `default` if absent or bad."""
    seconds = retry_after_seconds(headers.get("retry-after"))
    return default if seconds is None else max(1, math.ceil(seconds))


async def with_retries(send: Callable[[], Awaitable[Fetched]], budget: float,
                       who: str) -> Fetched:
    """Call `send`; on 429, sleep Retry-After while `budget` seconds last, then answer 429."""
    spent = 0.0
    while True:
        fetched = await send()
        if fetched.status != 429:
            return fetched
        wait = retry_after(fetched.headers)
        if spent + wait > budget:
            raise Overloaded(f"{who} is over capacity (429) and asked to retry in {wait} s",
                             retry_after=wait)
        spent += wait
        await asyncio.sleep(wait)


def error_text(fetched: Fetched, scrub: Scrubber) -> str:
    """Upstream's own explanation: `error`/`detail`/`message` of a JSON body, else its text."""
    text = fetched.body.decode("utf-8", "replace")
    if fetched.content_type == "application/json":
        data = json_object(fetched.body)
        if data is not None:
            for key in ("error", "detail", "message"):
                if data.get(key):
                    found = data[key]
                    text = found if isinstance(found, str) else json.dumps(found)
                    break
    return scrub(text) or "(empty body)"


def describe_status(fetched: Fetched, who: str, scrub: Scrubber) -> str:
    """e.g. `upstream answered 503: overloaded`."""
    return f"{who} answered {fetched.status}: {error_text(fetched, scrub)}"


#: An allowed origin of upstream URLs: scheme, host (its subdomains too) and port.
Origin = tuple[str, str, int]
#: Upstream images are checked like client inputs, bar the smallest side (upstream's own
#: outputs may be small) and a larger largest side.
UPSTREAM_MAX_SIDE = 4096


def origin_of(url: httpx2.URL) -> Origin:
    """(scheme, host, port) of `url`, the scheme's default port filled in."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower().rstrip("."), port


def allowed_origins(entries: list[str], base: httpx2.URL) -> list[Origin]:
    """The origins upstream URLs may point to: each `host` (port 443) or `host:port` of
    `entries` over https, and the configured base URL's own origin."""
    origins = [origin_of(httpx2.URL(f"https://{entry}")) for entry in entries]
    return list(dict.fromkeys([*origins, origin_of(base)]))


def origin_allowed(url: httpx2.URL, allowed: list[Origin]) -> bool:
    """Whether `url` has an allowed scheme and port, on an allowed host or a subdomain."""
    scheme, host, port = origin_of(url)
    return any(scheme == a_scheme and port == a_port
               and (host == a_host or host.endswith("." + a_host))
               for a_scheme, a_host, a_port in allowed)


def describe_origins(allowed: list[Origin]) -> str:
    """e.g. `https://bfl.ai:443, https://localhost:8443`."""
    return ", ".join(f"{scheme}://{host}:{port}" for scheme, host, port in allowed)


def checked_url(url: object, allowed: list[Origin], what: str) -> httpx2.URL:
    """`url` if its scheme, host and port are allowed; else UpstreamFailed naming what was
    wrong (nothing has been sent to it)."""
    try:
        parsed = httpx2.URL(url) if isinstance(url, str) else None
    except httpx2.InvalidURL:
        parsed = None
    if parsed is None or not parsed.host or parsed.scheme not in ("http", "https"):
        raise UpstreamFailed(f"upstream returned a {what} that is not a URL")
    if not origin_allowed(parsed, allowed):
        scheme, host, port = origin_of(parsed)
        raise UpstreamFailed(f"upstream returned a {what} on {scheme}://{host}:{port}, outside "
                             f"the allowed origins ({describe_origins(allowed)}); refused")
    return parsed


def to_output(data: bytes, fmt: ImageFormat, jpeg_quality: int, who: str,
              max_bytes: int) -> bytes:
    """Upstream's image in `fmt`, re-encoded only when its format differs; UpstreamFailed
    (502) naming the rule when it fails the checks client inputs get (pixel bomb, size,
    format, frames) or cannot be decoded."""
    limits = ImageLimits(max_bytes=max_bytes, min_side=1, max_side=UPSTREAM_MAX_SIDE)
    try:
        image = open_image(data, "image", limits)
        if FORMAT_OF_PIL.get(image.format or "") == fmt:
            image.verify()  # checks the data without a full decode
            return data
        image.load()
    except InvalidInputImage as exc:
        raise UpstreamFailed(f"{who} sent an image that cannot be read: {exc.message}"
                             ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # any reader failure on upstream's bytes is upstream's fault
        raise UpstreamFailed(f"{who} sent an image that cannot be read: {exc}") from exc
    return encode_image(image.convert("RGB"), fmt, jpeg_quality=jpeg_quality)
