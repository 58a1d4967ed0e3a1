#!/usr/bin/env python3
"""Handshakes per second per core: the sans-IO core in process, and wgpy-daemon against

The measurement code lives in tests/support/load_handshakes.py (the tests share it); its docstring says
what is measured and how. `python3 bench/handshakes.py --help` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from load_handshakes import main

if __name__ == "__main__":
    sys.exit(main())
