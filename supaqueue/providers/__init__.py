"""supaqueue's resources, one per real thing supaqueue installs (docs/design.md).

Each module holds a `ResourceProvider` (explicit check/diff/create/read/update/delete; connections
opened inside each method), which the provider plugin `pulumi-resource-supaqueue` serves
(supaqueue/provider/), and the `SupaqueueResource` (custom.py) a program declares. Type tokens:
`supaqueue:index:<Name>` (until 0.1.0 dynamic resources, `pulumi-python:dynamic/supaqueue:<Name>`).
"""
