"""Checks of a stack file (`Pulumi.<stack>.yaml`) that must happen before the Pulumi CLI reads it.

The CLI turns every config value into JSON, and JSON has no NaN or infinity: a `.nan`, `.inf` or
`1e400` anywhere in the file stops every `pulumi` command with "invalid YAML file: could not
unmarshal map: json: unsupported value: NaN", naming no key, before the program (and so
supaqueue/config.py) can say which value is wrong. `scripts/pulumi-stack.sh` runs this first:

    python -m supaqueue.stack_file Pulumi.dev.yaml     # exit 1, naming each such key
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import yaml

# A plain (unquoted) scalar that YAML 1.2's core schema, which the Pulumi CLI reads with, makes a
# float; PyYAML (YAML 1.1) reads `1e400` as text, so the test is on the text itself.
_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)


def _not_finite(node: yaml.ScalarNode) -> bool:
    if node.style is not None or not _FLOAT.fullmatch(node.value):
        return False
    value = node.value.lower().replace(".inf", "inf").replace(".nan", "nan")
    return not math.isfinite(float(value))


def _walk(node: yaml.Node, path: str, found: list[str]) -> None:
    if isinstance(node, yaml.ScalarNode):
        if _not_finite(node):
            found.append(
                f"{path}: {node.value} is not a number Pulumi can read (no NaN or infinity in its "
                "config): give a finite number"
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", found)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            _walk(value, f"{path}.{name}" if path else str(name), found)


def stack_file_problems(text: str) -> list[str]:
    """Each config value of a stack file the Pulumi CLI cannot read, by its key path
    (`supaqueue:queues[0].rate_limit_per_second: .nan ...`)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        return [f"is not valid YAML: {exc}"]
    if not isinstance(root, yaml.MappingNode):
        return []
    found: list[str] = []
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "config":
            _walk(value, "", found)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    status = 0
    for name in args:
        path = Path(name)
        if not path.is_file():
            continue
        for problem in stack_file_problems(path.read_text()):
            print(f"{path.name}: {problem}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
