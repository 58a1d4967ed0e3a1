#!/usr/bin/env python3
"""Many idle peers on one wgpy-daemon (or wireguard-go): memory per peer and CPU at rest.

The measurement code lives in tests/support/load_peers.py (the tests share it); its docstring says
what is measured and how. `python3 bench/peers.py --help` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from load_peers import main

if __name__ == "__main__":
    sys.exit(main())
