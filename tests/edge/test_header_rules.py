"""The header rule checked at preview (supaqueue/providers/queue/spec.py) against the runtime
that sends the headers: every name and value preview accepts, Deno's fetch Headers accepts and
sends as written; whatever Deno refuses, preview refuses (so no queue passes `up` and then fails
every dispatch, issue #14.1)."""

from __future__ import annotations

import json
import subprocess

from harness.function_process import deno_binary, deno_env
from supaqueue.providers.queue.spec import validate_queue

CHECK = """
const cases = JSON.parse(await new Response(Deno.stdin.readable).text());
const out = cases.map(([name, value]) => {
  try {
    return new Headers([[name, value]]).get(name) === value ? "kept" : "changed";
  } catch {
    return "refused";
  }
});
console.log(JSON.stringify(out));
"""


def _corpus() -> list[tuple[str, str]]:
    chars = [chr(c) for c in range(0, 0x80)] + ["\u00e9", "\u00ff", "\u0100", "€", "\u2028", "😀"]
    cases = [("X-Key", f"a{c}b") for c in chars] + [("X-Key", c) for c in chars]
    cases += [(f"X{c}Key", "v") for c in chars] + [(f"X-Key{c}", "v") for c in chars]
    cases += [("X-Key", " lead"), ("X-Key", "trail "), ("X-Key", "\tboth\t"), ("X-Key", "")]
    return cases


def test_preview_accepts_only_headers_the_runtime_sends_as_written() -> None:
    cases = _corpus()
    proc = subprocess.run(
        [deno_binary(), "eval", "--ext=ts", CHECK],
        input=json.dumps(cases),
        env=deno_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    runtime = json.loads(proc.stdout)
    assert len(runtime) == len(cases)
    preview = [
        validate_queue({"name": "q", "edge_function_name": "fn", "headers": {n: v}}) == []
        for n, v in cases
    ]
    accepted_but_not_sent = [
        (n, v, r) for (n, v), ok, r in zip(cases, preview, runtime, strict=True)
        if ok and r != "kept"
    ]  # fmt: skip
    assert accepted_but_not_sent == []
    refused_by_runtime = [c for c, r in zip(cases, runtime, strict=True) if r == "refused"]
    assert refused_by_runtime, "the corpus must hold headers the runtime refuses"
    assert sum(preview) > 100, "the corpus must hold headers preview accepts"
