"""`wgpy-quick strip` prints byte for byte what the real `wg-quick strip` prints, for every
example config and for awkward spellings (case, spacing, comments, hooks with '=')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from quicklib import EXAMPLES

AWKWARD = """\
# leading comment
[interface]
  privatekey=   yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=   # trailing
ADDRESS = 10.0.0.1/24,fd00::1/64
dns=10.0.0.53 , corp.example
PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo a=b # comment kept out
  MTU	=	1400
SaveConfig = false
ListenPort = 51820

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
Address = 10.9.9.9/32
AllowedIPs = 10.0.0.2/32
"""


def _strip_both(path: Path) -> tuple[str, str]:
    theirs = subprocess.run(["wg-quick", "strip", str(path)], capture_output=True, text=True,
                            check=True).stdout
    ours = subprocess.run([sys.executable, "-m", "wgpy.cli.wg_quick", "strip", str(path)],
                          capture_output=True, text=True, check=True).stdout
    return theirs, ours


@pytest.mark.parametrize("example", sorted(p.relative_to(EXAMPLES).as_posix()
                                           for p in EXAMPLES.rglob("*.conf")))
def test_strip_examples_like_wg_quick(e2e_environment: None, tmp_path: Path, example: str) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text((EXAMPLES / example).read_text())
    path.chmod(0o600)
    theirs, ours = _strip_both(path)
    assert ours == theirs


def test_strip_awkward_spelling_like_wg_quick(e2e_environment: None, tmp_path: Path) -> None:
    path = tmp_path / "wg1.conf"
    path.write_text(AWKWARD)
    path.chmod(0o600)
    theirs, ours = _strip_both(path)
    assert ours == theirs
    assert "Address = 10.9.9.9/32" in ours  # only the [Interface] section loses quick keys
