"""Inputs shared by the providers that talk to the Management API, and their validation."""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure

from components.clients.management_api import ManagementApi
from components.providers.base import unknown_keys

API_KEYS = ("management_api_url", "project_ref", "access_token")


def check_api_props(news: dict[str, Any]) -> list[CheckFailure]:
    unknown = unknown_keys(news)
    failures = []
    for key in API_KEYS:
        value = news.get(key)
        if key not in unknown and (not isinstance(value, str) or not value):
            failures.append(CheckFailure(key, "is required (a non-empty string)"))
    url = news.get("management_api_url")
    if isinstance(url, str) and url and not url.startswith(("http://", "https://")):
        failures.append(CheckFailure("management_api_url", f"must be an http(s) URL, got {url!r}"))
    return failures


def api_client(props: dict[str, Any]) -> ManagementApi:
    return ManagementApi(props["management_api_url"], props["access_token"], props["project_ref"])
