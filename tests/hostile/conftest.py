"""The hostile-venue suite: a misbehaving venue on loopback beside a healthy one."""

from __future__ import annotations

import sys
from pathlib import Path

# The fake venue is a plain module beside these tests (the suite imports in importlib mode).
sys.path.insert(0, str(Path(__file__).parent))
