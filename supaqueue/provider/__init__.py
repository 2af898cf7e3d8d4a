"""supaqueue's resource provider plugin, `pulumi-resource-supaqueue` (console script).

The engine starts it like any resource plugin; it serves Pulumi's gRPC `ResourceProvider` on
127.0.0.1 and dispatches each call by the resource's type token (`supaqueue:index:Queue`, ...)
to the provider logic in `supaqueue.providers` (server.py, registry.py). `schema.json` (package
data, served by GetSchema) is the one description of the tokens, their properties and which are
secret; the program's resource classes take their tokens and secret outputs from it (schema.py).
How the engine finds the plugin: docs/architecture.md, "Resource provider".
"""
