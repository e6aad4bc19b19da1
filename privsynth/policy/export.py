"""The policy JSON Schema as a file, for editors (YAML language servers) and CI linters.

``privsynth policy schema`` prints it; ``python -m privsynth.policy.export`` rewrites the copy
shipped in ``privsynth/schemas/policy.schema.json`` (a test checks that the copy is current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from privsynth.policy.model import policy_json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "policy.schema.json"
SCHEMA_ID = "https://privsynth.invalid/schemas/policy.schema.json"


def schema_text() -> str:
    """The JSON Schema of a policy file, as stable, pretty-printed JSON text."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
              **policy_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the schema file; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    sys.stdout.write(f"wrote {write_schema()}\n")
