"""Dynamic providers, one per real thing supaqueue installs (docs/design.md).

Each module holds a `ResourceProvider` (explicit check/diff/create/read/update/delete; connections
opened inside each method because the provider object is pickled into state) and the dynamic
`Resource` that uses it. Type tokens: `pulumi-python:dynamic/supaqueue:<Name>`.
"""
