"""What tests and benchmarks drive supaqueue's real parts with: the engine in a database
(`engine`, `edge_engine`), the dispatcher as a Deno process (`function_process`), a target
(`target_server`), a Pulumi project (`pulumi_project`), the toolchain's paths (`toolchain`) and
this machine's processes (`procs`).

Dev tooling: never shipped (pyproject packages only `supaqueue`), never imported by `supaqueue`,
and it imports nothing of `tests/` or `benchmarks/` (tests/unit/test_layering.py)."""
