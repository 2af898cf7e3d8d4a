"""The Management API target (url, project ref, token) as one typed value, shared by the
providers that call the API: how it becomes their inputs, its validation, and the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure

from supaqueue.clients.management_api import ManagementApi
from supaqueue.providers.base import unknown_keys

# The target's keys in each provider's inputs and state (flat, as stacks already hold them).
API_KEYS = ("management_api_url", "project_ref", "access_token")
# A change of these updates state only; the project is part of a resource's identity.
API_UPDATABLE = ("management_api_url", "access_token")
API_SECRET_OUTPUTS = ["access_token"]


@dataclass(frozen=True)
class ApiTarget:
    """Which project's Management API to call, and with which token (kept secret in state)."""

    url: pulumi.Input[str]
    project_ref: pulumi.Input[str]
    access_token: pulumi.Input[str]

    def props(self) -> dict[str, pulumi.Input[str]]:
        return dict(zip(API_KEYS, (self.url, self.project_ref, self.access_token), strict=True))


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
