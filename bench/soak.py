#!/usr/bin/env python3
"""Real-time soak of wgpy-daemon: traffic both ways and peer changes through the UAPI, RSS

The measurement code lives in tests/support/load_soak.py (the tests share it); its docstring says
what is measured and how. `python3 bench/soak.py --help` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from load_soak import main

if __name__ == "__main__":
    sys.exit(main())
