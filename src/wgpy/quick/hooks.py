"""PreUp / PostUp / PreDown / PostDown: shell snippets run by bash with %i replaced.

wg-quick evaluates each hook in a subshell of its own bash under `set -e -o pipefail`, so a
failing hook stops the operation. We run `bash -e -o pipefail -c HOOK` with INTERFACE and
CONFIG_FILE exported (hooks written for wg-quick sometimes use them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from wgpy.quick import log
from wgpy.quick.config import QuickError


def run_hooks(phase: str, hooks: list[str], ifname: str, config_path: Path) -> None:
    env = {**os.environ, "INTERFACE": ifname, "CONFIG_FILE": str(config_path)}
    for hook in hooks:
        command = hook.replace("%i", ifname)
        log.action(command)
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command], check=False, env=env
        )
        if result.returncode != 0:
            raise QuickError(f"{phase} hook failed with status {result.returncode}: {command}")
