"""wgpy-quick [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ] — wg-quick(8) for wgpy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from wgpy.conf import ConfigError, strip_config
from wgpy.quick import config as quick_config
from wgpy.quick.config import QuickConfig, QuickError

PROGRAM = "wgpy-quick"

USAGE = f"""\
Usage: {PROGRAM} [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]

  CONFIG_FILE is a configuration file, whose filename is the interface name
  followed by `.conf'. Otherwise, INTERFACE is an interface name, with
  configuration found at /etc/wireguard/INTERFACE.conf. It is to be readable
  by wgpy setconf (the same format as wg(8) setconf), with the exception of
  the following additions to the [Interface] section, handled by {PROGRAM}:

  - Address: may be specified one or more times and contains one or more
    IP addresses (with an optional CIDR mask) to be set for the interface.
  - DNS: an optional DNS server or search domain to use while the device is up.
  - MTU: an optional MTU for the interface; if unspecified, auto-calculated.
  - Table: an optional routing table to which routes will be added; if
    unspecified or `auto', the default table is used. If `off', no routes
    are added.
  - PreUp, PostUp, PreDown, PostDown: script snippets which will be executed
    by bash(1) at the corresponding phases of the link. The string `%i'
    is expanded to INTERFACE.
  - SaveConfig: if set to `true', the configuration is saved from the current
    state of the interface upon shutdown.

  Without the WireGuard kernel module, the userspace implementation named by
  WG_QUICK_USERSPACE_IMPLEMENTATION (default: wgpy-daemon) is started.
"""


def _up(quick: QuickConfig) -> None:
    from wgpy.quick.up import up

    up(quick)


def _down(quick: QuickConfig) -> None:
    from wgpy.quick.down import down

    down(quick)


def _save(quick: QuickConfig) -> None:
    from wgpy.quick.down import save_running

    save_running(quick)


def _strip(target: str) -> None:
    # Like wg-quick, strip only drops wg-quick's keys; it does not validate the rest (the
    # consumer, `wgpy setconf`/`syncconf`, reports errors in what remains). wg-quick prints the
    # text with `echo`, which adds one newline.
    _path, _interface, text = quick_config.read(target)
    sys.stdout.write(strip_config(text) + "\n")
    sys.stdout.flush()


COMMANDS: dict[str, Callable[[QuickConfig], None]] = {
    "up": _up,
    "down": _down,
    "save": _save,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 1 and args[0] in ("--help", "-h", "help"):
        sys.stderr.write(USAGE)
        return 0
    if len(args) != 2 or (args[0] not in COMMANDS and args[0] != "strip"):
        sys.stderr.write(USAGE)
        return 1
    command, target = args
    if os.geteuid() != 0 and command != "strip":
        print(f"{PROGRAM}: must be run as root", file=sys.stderr)
        return 1
    try:
        if command == "strip":
            _strip(target)
        else:
            COMMANDS[command](quick_config.load(target))
    except ConfigError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        return 1
    except QuickError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # every step names its own failures; this is the backstop: no traceback, the path
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROGRAM}: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
