"""`SupaqueueResource`: the base of supaqueue's resources, served by its provider plugin.

Each is a `pulumi.CustomResource` of type `supaqueue:index:<kind>` (the package schema,
supaqueue/provider/schema.json, lists them), asking for the plugin at this package's version and
keeping the schema's secret properties secret in state. Until 0.1.0 each was a
`pulumi.dynamic.Resource` of type `pulumi-python:dynamic/supaqueue:<kind>` with the same name
and parent (supaqueue.provider.registry.DYNAMIC_TYPES).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pulumi

from supaqueue.provider.registry import DYNAMIC_TYPE_PREFIX
from supaqueue.provider.schema import secret_properties, token
from supaqueue.provider.version import plugin_version


class SupaqueueResource(pulumi.CustomResource):
    kind: ClassVar[str]
    """The resource's kind: its type token is `supaqueue:index:<kind>`."""

    def __init_subclass__(cls, *, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        own = pulumi.ResourceOptions(
            version=plugin_version(),
            additional_secret_outputs=secret_properties(self.kind),
            # A stack made before 0.1.0 holds this resource as the dynamic type: the alias keeps
            # it (no replace; the provider change alone is no diff, docs/architecture.md).
            aliases=[pulumi.Alias(type_=f"{DYNAMIC_TYPE_PREFIX}{self.kind}")],
        )
        super().__init__(token(self.kind), name, props, pulumi.ResourceOptions.merge(opts, own))
