"""cfn-lint reports zero errors on every mode's template (W3005 is CDK's own redundant DependsOn)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def test_cfn_lint_has_no_errors(built):
    templates = [str(b.outdir / "HybridStream.template.json") for b in built.values()]
    proc = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--format", "parseable", "--", *templates],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in proc.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    assert proc.returncode & 3 == 0, proc.stdout + proc.stderr
    assert errors == []
