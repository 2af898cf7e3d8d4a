"""What a stack made before 0.1.0 left in its state: the dynamic provider's pickled code.

Until 0.1.0 every supaqueue resource was a `pulumi.dynamic.Resource`, whose inputs and outputs
carry `__provider`: the provider's Python code, pickled. The resource classes alias the old type
(providers/custom.py), so such a stack's resources are the same resources served by this plugin
(the provider change alone is no diff: the engine asks this plugin's DiffConfig, which never
replaces). What is left is the pickle in their outputs. The plugin never runs it: diff reports it
as the one change (an update, never a replace), and that update only writes the outputs back
without it (nothing in the database or the project changes). Reads drop it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PICKLE = "__provider"


def has_pickle(props: Mapping[str, Any]) -> bool:
    return PICKLE in props


def without_pickle(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in props.items() if key != PICKLE}
