"""An Edge Function deployed from a source folder through the Management API.

The diff is by content hash of the folder's files (supaqueue/edge_source.py): an edit to any
deployed file redeploys, anything else leaves the function alone. A function deleted outside
Pulumi (say `supabase functions deploy --prune` from another folder) shows at `check`, so
`pulumi preview` says so and `up` deploys it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from supaqueue.edge_source import content_hash, source_files
from supaqueue.errors import ManagementApiError
from supaqueue.providers.api_props import (
    API_KEYS,
    API_SECRET_OUTPUTS,
    API_UPDATABLE,
    ApiTarget,
    api_client,
    check_api_props,
)
from supaqueue.providers.base import (
    declared_outputs,
    explicit_diff,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.providers.queue.spec import SLUG_PATTERN

DEPLOY_KEYS = ("source_dir", "content_hash", "verify_jwt", "entrypoint_path", "import_map_path")
# What the deployed function is. `source_dir` is only where the files are on this machine (an
# absolute path, different in every checkout and CI runner): `content_hash` says what they hold.
DEPLOYED_KEYS = tuple(key for key in DEPLOY_KEYS if key != "source_dir")
OUTPUTS = ("function_id", "version", "status")
# What `content_hash` says in the inputs of a function that state has but the project does not:
# a change of a deployed key, so preview shows it and `up` deploys again (what it then records
# is the hash of what it sent).
MISSING = "missing from the project (deleted outside Pulumi): `pulumi up` deploys it again"


def _missing(olds: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """Whether a function this stack deployed is gone from the project. Asked only for one
    already in state with every API value known; an API that cannot answer is no finding (the
    deploy itself would then fail, saying why)."""
    if not olds or unknown_keys(inputs) & {*API_KEYS, "slug"}:
        return False
    try:
        with api_client(inputs) as api:
            return api.get_function(inputs["slug"]) is None
    except (ManagementApiError, KeyError, TypeError, ValueError):
        return False


def _deploy(props: dict[str, Any]) -> dict[str, Any]:
    files = source_files(Path(props["source_dir"]))
    with api_client(props) as api:
        deployed = api.deploy_function(
            props["slug"],
            files,
            entrypoint_path=props["entrypoint_path"],
            import_map_path=props.get("import_map_path"),
            verify_jwt=bool(props["verify_jwt"]),
        )
    return {
        **props,
        # What was actually sent: if the files changed since preview, state says so.
        "content_hash": content_hash(files),
        "function_id": str(deployed.get("id", "")),
        "version": deployed.get("version"),
        "status": deployed.get("status"),
    }


class EdgeFunctionProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = check_api_props(news)
        unknown = unknown_keys(news)
        slug = news.get("slug")
        is_slug = isinstance(slug, str) and SLUG_PATTERN.fullmatch(slug) is not None
        if "slug" not in unknown and not is_slug:
            failures.append(CheckFailure("slug", f"{slug!r} is not a function slug"))
        source_dir = news.get("source_dir")
        if "source_dir" not in unknown and not (
            isinstance(source_dir, str) and (Path(source_dir) / "index.ts").is_file()
        ):
            failures.append(CheckFailure("source_dir", f"{source_dir!r} has no index.ts"))
        if not isinstance(news.get("verify_jwt"), bool):
            failures.append(CheckFailure("verify_jwt", "must be true or false"))
        inputs = {key: news.get(key) for key in (*API_KEYS, "slug", *DEPLOY_KEYS)}
        inputs["entrypoint_path"] = inputs["entrypoint_path"] or "index.ts"
        if not failures and _missing(_olds, inputs):
            inputs["content_hash"] = f"{inputs['content_hash']} ({MISSING})"
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(
            olds,
            news,
            updatable=(*DEPLOYED_KEYS, *API_UPDATABLE),
            identity=("slug", "project_ref"),
        )

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["slug"], _deploy(props))

    @presented
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if all(olds.get(key) == news.get(key) for key in DEPLOYED_KEYS):
            # Only how we reach the API (or where the files are) changed: nothing to redeploy.
            return UpdateResult({**news, **{key: olds.get(key) for key in OUTPUTS}})
        return UpdateResult(_deploy(news))

    @presented
    def read(self, slug: str, props: dict[str, Any]) -> ReadResult:
        with api_client(props) as api:
            found = api.get_function(slug)
        if found is None:
            return ReadResult("", {})
        outs = {
            **props,
            "verify_jwt": found.get("verify_jwt", props.get("verify_jwt")),
            "function_id": str(found.get("id", "")),
            "version": found.get("version"),
            "status": found.get("status"),
        }
        if found.get("version") != props.get("version"):
            # Redeployed behind Pulumi's back: the deployed code is not what state says.
            outs["content_hash"] = f"changed outside Pulumi (version {found.get('version')})"
        return ReadResult(slug, outs)

    @presented
    def delete(self, slug: str, props: dict[str, Any]) -> None:
        with api_client(props) as api:
            api.delete_function(slug)


class EdgeFunction(SupaqueueResource, kind="EdgeFunction"):
    """A deployed Edge Function; `content_hash` is what its diff compares."""

    function_id: pulumi.Output[str]
    version: pulumi.Output[int]
    status: pulumi.Output[str]
    content_hash: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        api: ApiTarget,
        slug: str,
        source_dir: str,
        content_hash: str,
        verify_jwt: bool,
        import_map_path: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            **api.props(),
            "slug": slug,
            "source_dir": source_dir,
            "content_hash": content_hash,
            "verify_jwt": verify_jwt,
            "entrypoint_path": "index.ts",
            "import_map_path": import_map_path,
        }
        super().__init__(
            name,
            declared_outputs(props, OUTPUTS),
            with_secret_outputs(opts, API_SECRET_OUTPUTS),
        )
