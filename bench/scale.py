#!/usr/bin/env python3
"""Many peers on one interface: configuration time, idle cost and per-packet cost (root).

The measurement code lives in tests/support/load_scale.py (the tests share it); its docstring says
what is measured and how. `python3 bench/scale.py --help` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from load_scale import main

if __name__ == "__main__":
    sys.exit(main())
