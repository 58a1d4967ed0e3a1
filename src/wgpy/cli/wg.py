"""`wgpy`: the `wg` command of wireguard-tools (v1.0.20210914), in Python.

Same subcommands, arguments, output bytes and exit status as wg; see README "JSON output" for
the one addition (`show --json`). Subcommands are a table of small functions; formatting is in
wgpy/show.py, request building in cli/wg_set.py and conf/request.py, device access in
control/client.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from wgpy import keys
from wgpy import show as fmt
from wgpy.cli.wg_set import UsageProblem, parse_config_file, request_from_args, sync_request
from wgpy.conf import values
from wgpy.conf.request import request_from_config
from wgpy.control.client import DeviceControl
from wgpy.model import DeviceState

WG_TOOLS_VERSION = "1.0.20210914"
IFNAMSIZ = 16


class Output:
    """stdout/stderr as bytes, so text wg passes through unchanged (odd bytes in a key file or
    config line) comes out unchanged."""

    def __init__(self) -> None:
        self.prog = "wgpy"

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape"))
        sys.stdout.buffer.flush()

    @staticmethod
    def err(text: str) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stderr.buffer.write(text.encode("utf-8", errors="surrogateescape"))
        sys.stderr.buffer.flush()


io = Output()
control_factory: Callable[[], DeviceControl] = DeviceControl


def perror(prefix: str, err: OSError) -> None:
    io.err(f"{prefix}: {os.strerror(err.errno) if err.errno else str(err)}\n")


def truncate_ifname(name: str) -> str:
    """wg copies the name into a 16-byte buffer for set/setconf (at most 15 bytes)."""
    return name.encode("utf-8", errors="surrogateescape")[: IFNAMSIZ - 1].decode(
        "utf-8", errors="surrogateescape"
    )


# -- keys -----------------------------------------------------------------------------------------


def cmd_genkey(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        io.err(f"Usage: {io.prog} {argv[0]}\n")
        return 1
    try:
        info = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        if info.st_mode & stat.S_IRWXO:
            io.err("Warning: writing to world accessible file.\n"
                   "Consider setting the umask to 077 and trying again.\n")
        # wgpy goes one step further than wg: a key file it writes ends up 0600 at most.
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            try:
                os.fchmod(sys.stdout.fileno(), stat.S_IMODE(info.st_mode) & 0o700)
            except OSError:
                pass
    key = keys.generate_private_key() if argv[0] == "genkey" else keys.generate_preshared_key()
    io.out(keys.key_to_base64(key) + "\n")
    return 0


def cmd_pubkey(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        io.err(f"Usage: {io.prog} {argv[0]}\n")
        return 1
    stdin = sys.stdin.buffer
    head = stdin.read(keys.B64_KEY_LEN)
    if len(head) != keys.B64_KEY_LEN:
        io.err(f"{io.prog}: Key is not the correct length or format\n")
        return 1
    while chunk := stdin.read(4096):
        if any(byte != 0 and chr(byte) not in values.WG_SPACE for byte in chunk):
            io.err(f"{io.prog}: Trailing characters found after key\n")
            return 1
    try:
        private = values.parse_key(head.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        io.err(f"{io.prog}: Key is not the correct length or format\n")
        return 1
    io.out(keys.key_to_base64(keys.public_key(private)) + "\n")
    return 0


# -- show -----------------------------------------------------------------------------------------


def show_usage(command: str) -> None:
    io.err(
        f"Usage: {io.prog} {command} {{ <interface> | all | interfaces }} [public-key | "
        "private-key | listen-port | fwmark | peers | preshared-keys | endpoints | allowed-ips | "
        "latest-handshakes | transfer | persistent-keepalive | dump]\n"
    )


class NamesOption:
    """wgpy's `--names [--config-dir DIR]` for show: peers' names from DIR/IFACE.conf
    (default /etc/wireguard), the `# friendly_name =` comments add-peer writes."""

    def __init__(self, args: list[str]) -> None:
        self.wanted = "--names" in args[1:]
        self.config_dir: str | None = None
        self.problem = False
        rest = [args[0]]
        items = iter(args[1:])
        for item in items:
            if item == "--names":
                continue
            if item == "--config-dir":
                self.config_dir = next(items, None)
                self.problem = self.problem or self.config_dir is None
                continue
            rest.append(item)
        self.rest = rest

    def names(self, ifname: str) -> dict[bytes, str]:
        from wgpy.ops import peers, serverconf

        directory = self.config_dir or str(serverconf.DEFAULT_CONFIG_DIR)
        return peers.config_names(Path(directory) / f"{ifname}.conf")


def cmd_show(argv: Sequence[str]) -> int:
    args = list(argv)
    if "--json" in args[1:]:
        return cmd_show_json(args)
    naming = None
    if "--names" in args[1:]:
        naming = NamesOption(args)
        args = naming.rest
        if naming.problem or (len(args) == 3) or (len(args) > 1 and args[1] == "interfaces"):
            io.err(f"Usage: {io.prog} {args[0]} [<interface> | all] --names "
                   "[--config-dir <dir>]\n")
            return 1
    if len(args) > 3:
        show_usage(args[0])
        return 1
    control = control_factory()
    if len(args) == 1 or args[1] == "all":
        try:
            names = control.list_interfaces()
        except OSError as err:
            perror("Unable to list interfaces", err)
            return 1
        status = 1 if names else 0
        for position, name in enumerate(names):
            try:
                state = control.get(name)
            except OSError as err:
                io.err(f"Unable to access interface {name}: {os.strerror(err.errno or 0)}\n")
                continue
            if len(args) == 3:
                text = fmt.field(name, state, args[2])
                if text is None:
                    io.err(f"Invalid parameter: `{args[2]}'\n")
                    show_usage(args[0])
                    return 1
                io.out(text)
            else:
                options = fmt.options_from_environment()
                if naming is not None:
                    options.names = naming.names(name)
                io.out(fmt.pretty(name, state, options))
                if position + 1 < len(names):
                    io.out("\n")
            status = 0
        return status
    if args[1] == "interfaces":
        if len(args) > 2:
            show_usage(args[0])
            return 1
        try:
            names = control.list_interfaces()
        except OSError as err:
            perror("Unable to list interfaces", err)
            return 1
        if names:
            io.out(" ".join(names) + "\n")
        return 0
    if len(args) == 2 and args[1] in ("-h", "--help", "help"):
        show_usage(args[0])
        return 0
    try:
        state = control.get(args[1])
    except OSError as err:
        perror("Unable to access interface", err)
        return 1
    if len(args) == 3:
        text = fmt.field(None, state, args[2])
        if text is None:
            io.err(f"Invalid parameter: `{args[2]}'\n")
            show_usage(args[0])
            return 1
        io.out(text)
        return 0
    options = fmt.options_from_environment()
    if naming is not None:
        options.names = naming.names(args[1])
    io.out(fmt.pretty(truncate_ifname(args[1]), state, options))
    return 0


def cmd_show_json(args: list[str]) -> int:
    """wgpy extension: `show [<interface> | all] --json [--show-keys] [--config-dir DIR]`;
    each peer has its "name" from the config (null when unknown)."""
    show_keys = "--show-keys" in args or os.environ.get("WG_HIDE_KEYS") == "never"
    naming = NamesOption(args)
    rest = [a for a in naming.rest[1:] if a not in ("--json", "--show-keys")]
    if naming.problem or len(rest) > 1 or (rest and rest[0] == "interfaces"):
        io.err(f"Usage: {io.prog} {args[0]} [<interface> | all] --json [--show-keys] "
               "[--config-dir <dir>]\n")
        return 1
    control = control_factory()
    if not rest or rest[0] == "all":
        try:
            names = control.list_interfaces()
        except OSError as err:
            perror("Unable to list interfaces", err)
            return 1
    else:
        names = [rest[0]]
    documents = []
    status = 0
    for name in names:
        try:
            state: DeviceState = control.get(name)
        except OSError as err:
            io.err(f"Unable to access interface {name}: {os.strerror(err.errno or 0)}\n")
            status = 1
            continue
        drops = getattr(control, "drops", None)
        documents.append(fmt.to_json(name, state, show_keys, drops(name) if drops else None,
                                     naming.names(name)))
    io.out(json.dumps({"interfaces": documents}, indent=2) + "\n")
    return status


def cmd_showconf(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        io.err(f"Usage: {io.prog} {argv[0]} <interface>\n")
        return 1
    try:
        state = control_factory().get(argv[1])
    except OSError as err:
        perror("Unable to access interface", err)
        return 1
    io.out(fmt.showconf(state))
    return 0


# -- set ------------------------------------------------------------------------------------------


SET_USAGE = (
    "<interface> [listen-port <port>] [fwmark <mark>] [private-key <file path>] "
    "[peer <base64 public key> [remove] [preshared-key <file path>] [endpoint <ip>:<port>] "
    "[persistent-keepalive <interval seconds>] [allowed-ips <ip1>/<cidr1>[,<ip2>/<cidr2>]...] ]..."
)


def cmd_set(argv: Sequence[str]) -> int:
    if len(argv) < 3:
        io.err(f"Usage: {io.prog} {argv[0]} {SET_USAGE}\n")
        return 1
    try:
        request, _warnings = request_from_args(list(argv[2:]))
    except UsageProblem as problem:
        io.err("".join(problem.lines))
        return 1
    except SystemExit as exit_:
        io.err(f"{exit_.code}\n")
        return 1
    try:
        control_factory().set(truncate_ifname(argv[1]), request)
    except OSError as err:
        perror("Unable to modify interface", err)
        return 1
    return 0


def cmd_setconf(argv: Sequence[str]) -> int:
    if len(argv) != 3:
        io.err(f"Usage: {io.prog} {argv[0]} <interface> <configuration filename>\n")
        return 1
    try:
        config = parse_config_file(argv[2])
    except UsageProblem as problem:
        io.err("".join(problem.lines))
        return 1
    except SystemExit as exit_:
        io.err(f"{exit_.code}\n")
        return 1
    ifname = truncate_ifname(argv[1])
    request = request_from_config(config, append=argv[0] == "addconf")
    control = control_factory()
    if argv[0] == "syncconf" and request.peers:
        try:
            runtime = control.get(ifname)
        except OSError as err:
            perror("Unable to retrieve current interface configuration", err)
            return 1
        sync_request(request, runtime)
    try:
        control.set(ifname, request)
    except OSError as err:
        perror("Unable to modify interface", err)
        return 1
    return 0


# -- dispatch -------------------------------------------------------------------------------------


SUBCOMMANDS: list[tuple[str, Callable[[Sequence[str]], int], str]] = [
    ("show", cmd_show, "Shows the current configuration and device information"),
    ("showconf", cmd_showconf,
     "Shows the current configuration of a given WireGuard interface, for use with `setconf'"),
    ("set", cmd_set, "Change the current configuration, add peers, remove peers, or change peers"),
    ("setconf", cmd_setconf, "Applies a configuration file to a WireGuard interface"),
    ("addconf", cmd_setconf, "Appends a configuration file to a WireGuard interface"),
    ("syncconf", cmd_setconf, "Synchronizes a configuration file to a WireGuard interface"),
    ("genkey", cmd_genkey, "Generates a new private key and writes it to stdout"),
    ("genpsk", cmd_genkey, "Generates a new preshared key and writes it to stdout"),
    ("pubkey", cmd_pubkey, "Reads a private key from stdin and writes a public key to stdout"),
]


def _cmd_demo(args: Sequence[str]) -> int:
    from wgpy.cli import demo

    return demo.main(list(args[1:]))


def _extra_subcommands() -> list[tuple[str, Callable[[Sequence[str]], int], str]]:
    """wgpy's own subcommands beyond wg's (operator tools, the demo). Imported lazily so the
    wg-compatible commands start as fast as they can."""
    from wgpy.cli import ops

    return [*ops.SUBCOMMANDS,
            ("demo", _cmd_demo, "Runs a tunnel between two throwaway network namespaces")]


def usage_text() -> str:
    lines = [f"Usage: {io.prog} <cmd> [<args>]\n\n", "Available subcommands:\n"]
    lines += [f"  {name}: {description}\n" for name, _, description in SUBCOMMANDS]
    lines.append("You may pass `--help' to any of these subcommands to view usage.\n")
    if io.prog != "wg":  # installed as `wg`, the usage is wg's to the byte
        lines.append("\nwgpy's own subcommands:\n")
        lines += [f"  {name}: {description}\n" for name, _, description in _extra_subcommands()]
    return "".join(lines)


def program_name(argv0: str) -> str:
    """wg prints its argv[0]; a Python entry point only knows its script path, so use the
    script's base name ("wgpy", or "wg" when installed/linked under that name)."""
    base = os.path.basename(argv0)
    if not base or base.endswith(".py") or base == "__main__":
        return "wgpy"
    return base


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run `wgpy` with argv (without the program name; default sys.argv[1:])."""
    if argv is None:
        argv = sys.argv[1:]
        # As a program, die of SIGPIPE/SIGINT the way wg (a C program) does: `wgpy show |
        # head -1` ends quietly, Ctrl-C during endpoint retries leaves no traceback.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    io.prog = prog or program_name(sys.argv[0] if sys.argv else "wgpy")
    args = list(argv)
    if len(args) == 1 and args[0] in ("-v", "--version", "version"):
        io.out(f"wgpy v{_wgpy_version()} (compatible with wireguard-tools v{WG_TOOLS_VERSION})\n")
        return 0
    if len(args) == 1 and args[0] in ("-h", "--help", "help"):
        io.out(usage_text())
        return 0
    if not args:
        return cmd_show(["show"])
    for name, function, _ in SUBCOMMANDS:
        if args[0] == name:
            return function(args)
    for name, function, _ in _extra_subcommands():
        if args[0] == name:
            return function(args)
    io.err(f"Invalid subcommand: `{args[0]}'\n")
    io.err(usage_text())
    return 1


def _wgpy_version() -> str:
    try:
        from importlib.metadata import version

        return version("wgpy")
    except Exception:  # noqa: BLE001 -- not installed: still answer
        return "0"


if __name__ == "__main__":
    sys.exit(main())
