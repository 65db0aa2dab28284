"""Decoding GPP strings with IAB Tech Lab's @iabgpp/cmpapi (run in node) for the tests."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def iab_decode(strings: list) -> list[dict]:
    """Each GPP string of STRINGS as @iabgpp/cmpapi decodes it ({sections, ids} or {error});
    an item {"encode": [section names]} gives the header IAB's encoder writes for them."""
    node = shutil.which("node")
    assert node, "node is needed for IAB's GPP library"
    assert (ROOT / "node_modules" / "@iabgpp" / "cmpapi").exists(), \
        "run `make node-deps` (npm install) for @iabgpp/cmpapi"
    done = subprocess.run([node, str(ROOT / "tests" / "support" / "gpp_decode.js")],
                          input=json.dumps(strings), capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=True)
    return json.loads(done.stdout)
