"""The few Supabase Management API operations supaqueue uses.

See docs/reference/supabase-platform.md.

Requests follow the OpenAPI document in docs/reference/. Transient failures are waited out
and retried a bounded number of times, so that `pulumi up` does not fail half-way on them: a 429
(the API allows 120 requests/minute), a 5xx answer (but 501/505, which retrying cannot change)
and a network error (refused, reset, timed out). The wait is Retry-After, else X-RateLimit-Reset,
else exponential backoff, capped. Retrying is safe: every operation here is idempotent (deploy
and set-secrets overwrite, deletes of what is gone are no-ops).
Error messages carry the API's own message; the access token never appears in them.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from supaqueue.errors import ManagementApiError

DEFAULT_URL = "https://api.supabase.com"
MAX_ATTEMPTS = 6
MAX_WAIT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 60.0
# Refused, reset, timed out, or closed without an answer: worth another try. (A bad URL or an
# unsupported scheme is not: it fails at once.)
TRANSIENT_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def is_transient(status_code: int) -> bool:
    """An answer worth retrying: rate limited, or a server or gateway failure."""
    return status_code == 429 or (500 <= status_code <= 599 and status_code not in (501, 505))


def retry_delay(response: httpx.Response | None, attempt: int, now: float | None = None) -> float:
    """Seconds to wait before a retry, from the response headers or backoff (no response: a
    network error)."""
    if response is None:
        return _bounded(0.5 * 2**attempt)
    now = time.time() if now is None else now
    retry_after = response.headers.get("retry-after")
    if retry_after:
        try:
            return _bounded(float(retry_after))
        except ValueError:
            when = _http_date(retry_after)
            if when is not None:
                return _bounded(when - now)
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            value = -1.0
        if value >= 0:
            # An epoch timestamp or a number of seconds: both forms are in use.
            return _bounded(value - now if value > 1_000_000_000 else value)
    return _bounded(0.5 * 2**attempt)


def _http_date(value: str) -> float | None:
    """An HTTP date as an epoch timestamp; None when the value is not one (Python raises
    ValueError there, which must not turn a 429 into a failed deployment)."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _bounded(seconds: float) -> float:
    return max(0.0, min(seconds, MAX_WAIT_SECONDS))


def api_message(response: httpx.Response) -> str:
    """The API's explanation of an error answer."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "msg", "error", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return json.dumps(body)[:300]


class ManagementApi:
    """A client bound to one project. Use it as a context manager; it holds an HTTP connection."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        project_ref: str,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token:
            raise ManagementApiError("no access token: set supaqueue:accessToken")
        if not project_ref:
            raise ManagementApiError("no project ref: set supaqueue:projectRef")
        self.project_ref = project_ref
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    def __enter__(self) -> ManagementApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- functions -------------------------------------------------------------------------

    def deploy_function(
        self,
        slug: str,
        files: Sequence[tuple[str, bytes]],
        *,
        entrypoint_path: str = "index.ts",
        import_map_path: str | None = None,
        verify_jwt: bool = True,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Create or update a function from source files (relative path, bytes)."""
        metadata: dict[str, Any] = {
            "entrypoint_path": entrypoint_path,
            "verify_jwt": verify_jwt,
            "name": name or slug,
        }
        if import_map_path:
            metadata["import_map_path"] = import_map_path
        # httpx writes `data` fields before `files`, so `metadata` is the first part, as the
        # Supabase CLI sends it.
        response = self._request(
            "POST",
            f"/functions/deploy?slug={slug}",
            data={"metadata": json.dumps(metadata)},
            files=[("file", (path, content, _content_type(path))) for path, content in files],
            what=f"deploy function {slug!r}",
        )
        return dict(response.json())

    def get_function(self, slug: str) -> dict[str, Any] | None:
        response = self._request(
            "GET", f"/functions/{slug}", what=f"get function {slug!r}", missing_ok=True
        )
        return None if response.status_code == 404 else dict(response.json())

    def list_functions(self) -> list[dict[str, Any]]:
        """The project's functions (each with its `slug`)."""
        response = self._request("GET", "/functions", what="list functions")
        return list(response.json())

    def delete_function(self, slug: str) -> bool:
        """Delete a function; False when it was already gone."""
        response = self._request(
            "DELETE", f"/functions/{slug}", what=f"delete function {slug!r}", missing_ok=True
        )
        return response.status_code != 404

    # --- secrets ---------------------------------------------------------------------------

    def list_secrets(self) -> list[dict[str, Any]]:
        response = self._request("GET", "/secrets", what="list secrets")
        return list(response.json())

    def create_secrets(self, secrets: Sequence[tuple[str, str]]) -> None:
        """Create or overwrite function secrets (name, value)."""
        body = [{"name": name, "value": value} for name, value in secrets]
        self._request("POST", "/secrets", json_body=body, what="set secrets")

    def delete_secrets(self, names: Sequence[str]) -> None:
        self._request("DELETE", "/secrets", json_body=list(names), what="delete secrets")

    # --- keys ------------------------------------------------------------------------------

    def api_keys(self, reveal: bool = True) -> list[dict[str, Any]]:
        response = self._request(
            "GET", f"/api-keys?reveal={'true' if reveal else 'false'}", what="list API keys"
        )
        return list(response.json())

    # --- PostgREST (Data API) settings ------------------------------------------------------

    def postgrest_schemas(self) -> list[str]:
        """The exposed schemas (`db_schema`, comma-separated), in order."""
        response = self._request("GET", "/postgrest", what="read the Data API settings")
        return split_schemas(str(response.json().get("db_schema", "")))

    def set_postgrest_schemas(self, schemas: Sequence[str]) -> list[str]:
        response = self._request(
            "PATCH", "/postgrest", json_body={"db_schema": ",".join(schemas)},
            what="change the Data API's exposed schemas",
        )  # fmt: skip
        return split_schemas(str(response.json().get("db_schema", "")))

    # --- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        data: dict[str, str] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        url = f"/v1/projects/{self.project_ref}{path}"
        for attempt in range(self._max_attempts):
            last = attempt + 1 == self._max_attempts
            try:
                # DELETE with a body is not in httpx's shortcuts; `request` takes it.
                response = self._client.request(method, url, json=json_body, data=data, files=files)
            except TRANSIENT_ERRORS as exc:
                if not last:
                    self._sleep(retry_delay(None, attempt))
                    continue
                raise ManagementApiError(
                    f"cannot {what}: {type(exc).__name__} reaching {self._client.base_url} "
                    f"({self._max_attempts} attempts)"
                ) from None
            except httpx.HTTPError as exc:
                raise ManagementApiError(
                    f"cannot {what}: {type(exc).__name__} reaching {self._client.base_url}"
                ) from None
            if is_transient(response.status_code) and not last:
                self._sleep(retry_delay(response, attempt))
                continue
            if response.status_code == 404 and missing_ok:
                return response
            if response.status_code >= 400:
                raise ManagementApiError(
                    f"cannot {what}: HTTP {response.status_code}: {api_message(response)}",
                    response.status_code,
                )
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


def split_schemas(db_schema: str) -> list[str]:
    """`db_schema` as PostgREST reads it: comma-separated, blanks around names ignored."""
    return [name.strip() for name in db_schema.split(",") if name.strip()]


def _content_type(path: str) -> str:
    if path.endswith((".ts", ".tsx", ".mts")):
        return "application/typescript"
    if path.endswith((".js", ".mjs")):
        return "application/javascript"
    if path.endswith(".json"):
        return "application/json"
    return "application/octet-stream"
