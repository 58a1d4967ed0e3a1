"""The operator subcommands of `wgpy`: a table the `wgpy` CLI dispatches into.

Each entry point takes argv with the subcommand's name first (as wgpy's own subcommands do:
`cmd(["add-peer", "wg0", "--name", "phone"])`) and returns the exit status. Standalone:
`python -m wgpy.cli.ops SUBCOMMAND ...`. Argument parsing, output and exit codes live here;
what the commands do is in the library package wgpy.ops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wgpy.conf import ConfigError
from wgpy.conf.writer import write_private_file
from wgpy.control.client import DeviceControl
from wgpy.keys import key_to_base64
from wgpy.ops import doctor, exporter, monitor, peers, qr, serverconf, system
from wgpy.ops.addpeer import (
    DEFAULT_CLIENT_ALLOWED_IPS,
    DEFAULT_KEEPALIVE,
    AddPeerRequest,
    OpsError,
    add_peer,
    remove_peer,
)

# Tests replace this to talk to a particular socket directory.
control_factory: Callable[[], DeviceControl] = DeviceControl


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as exit status 1 (wg's convention), not 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(1)


def _parser(argv: Sequence[str], description: str) -> _Parser:
    return _Parser(prog=f"wgpy {argv[0]}", description=description)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str],
         body: Callable[[argparse.Namespace], int]) -> int:
    try:
        args = parser.parse_args(list(argv[1:]))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return body(args)
    except OpsError as err:
        sys.stderr.write(f"{parser.prog}: {err}\n")
    except ConfigError as err:
        sys.stderr.write(f"{parser.prog}: {err}\n")
    except PermissionError as err:
        sys.stderr.write(f"{parser.prog}: {err.filename}: {err.strerror} (needs root)\n")
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        sys.stderr.write(f"{parser.prog}: {where}{err.strerror or err}\n")
    return 1


def running_as_root() -> bool:
    """The one root check of the operator commands (tests that drive them with fakes patch
    it)."""
    return os.geteuid() == 0


def _require_root(prog: str) -> None:
    if not running_as_root():
        raise OpsError(f"needs root ({prog} edits /etc/wireguard and the running interface)")


def _write_output(path: Path, data: bytes, option: str) -> None:
    """An output file that holds a private key: new, 0600, renamed into place (never through
    a symlink, never reusing someone else's file)."""
    try:
        write_private_file(path, data)
    except OSError as err:
        raise OpsError(f"{option} {path}: {err.strerror}") from None


# -- add-peer / remove-peer -----------------------------------------------------------------------


def cmd_add_peer(argv: Sequence[str]) -> int:
    parser = _parser(argv, "Add a peer to a running interface and its config; print the "
                           "client's config (and QR code).")
    parser.add_argument("interface")
    parser.add_argument("--name", required=True, help="the peer's name (kept in the config)")
    parser.add_argument("--address", default="auto",
                        help="'auto' (next free in each subnet) or CIDR[,CIDR] inside them")
    parser.add_argument("--allow-outside-subnet", action="store_true",
                        help="accept an --address outside the interface's subnets and add "
                             "its route, as wg-quick up does")
    parser.add_argument("--allowed-ips", default=DEFAULT_CLIENT_ALLOWED_IPS,
                        help="what the client routes through the tunnel")
    parser.add_argument("--endpoint", help="HOST:PORT clients connect to (remembered)")
    parser.add_argument("--dns", action="append", default=[],
                        help="DNS server(s) for the client, comma-separated or repeated")
    parser.add_argument("--keepalive", type=int, default=DEFAULT_KEEPALIVE,
                        help=f"client's PersistentKeepalive (default {DEFAULT_KEEPALIVE}, 0 = off)")
    parser.add_argument("--no-psk", action="store_true", help="no PresharedKey")
    parser.add_argument("--config", type=Path, help="server config (default /etc/wireguard/IFACE.conf)")
    parser.add_argument("--out", type=Path, help="write the client config here (0600), not stdout")
    parser.add_argument("--qr", action="store_true", help="print the config as a QR code")
    parser.add_argument("--qr-png", type=Path, help="write the QR code as a PNG (0600)")

    def body(args: argparse.Namespace) -> int:
        _require_root(parser.prog)
        dns = [item for entry in args.dns for item in entry.replace(",", " ").split()]
        written: list[Path] = []

        def deliver(client_config: str) -> None:
            # before the server changes: a file that cannot be written changes nothing
            if args.out is not None:
                _write_output(args.out, client_config.encode(), "--out")
                written.append(args.out)
            if args.qr_png is not None:
                _write_output(args.qr_png, qr.png_bytes(client_config), "--qr-png")
                written.append(args.qr_png)

        try:
            result = add_peer(
                AddPeerRequest(
                    ifname=args.interface, name=args.name,
                    config_path=args.config or serverconf.default_config_path(args.interface),
                    address=args.address, allowed_ips=args.allowed_ips, endpoint=args.endpoint,
                    dns=dns, keepalive=args.keepalive, preshared_key=not args.no_psk,
                    allow_outside_subnet=args.allow_outside_subnet, deliver=deliver,
                ),
                control_factory(),
            )
        except BaseException:
            for path in written:  # the peer was not added: its keys must not stay behind
                path.unlink(missing_ok=True)
            raise
        if args.out is None:
            sys.stdout.write(result.client_config)
        if args.qr:
            sys.stdout.write(qr.render_terminal(result.client_config))
        where = "the running interface and the config" if result.live else (
            f"the config only ({args.interface} is not running)")
        addresses = ", ".join(str(a) for a in result.addresses)
        sys.stderr.write(
            f"added peer {args.name.strip()!r} ({addresses}, public key "
            f"{key_to_base64(result.public_key)}) to {where}\n"
        )
        sys.stdout.flush()
        return 0

    return _run(parser, argv, body)


def cmd_remove_peer(argv: Sequence[str]) -> int:
    parser = _parser(argv, "Remove a peer, by name or public key, live and from the config.")
    parser.add_argument("interface")
    parser.add_argument("peer", help="the peer's name or public key")
    parser.add_argument("--config", type=Path, help="server config (default /etc/wireguard/IFACE.conf)")

    def body(args: argparse.Namespace) -> int:
        _require_root(parser.prog)
        result = remove_peer(
            args.interface, args.peer,
            args.config or serverconf.default_config_path(args.interface), control_factory(),
        )
        places = [p for p, done in (("the running interface", result.live),
                                    ("the config", result.in_config)) if done]
        label = repr(result.name) if result.name else key_to_base64(result.public_key)
        sys.stderr.write(f"removed peer {label} from {' and '.join(places)}\n")
        return 0

    return _run(parser, argv, body)


# -- qr -------------------------------------------------------------------------------------------


def cmd_qr(argv: Sequence[str]) -> int:
    parser = _parser(argv, "Show a config file as a QR code (terminal), or write it as PNG.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--png", type=Path, help="write a PNG (0600) instead of printing")
    parser.add_argument("--invert", action="store_true",
                        help="for dark-on-light terminals")

    def body(args: argparse.Namespace) -> int:
        try:
            text = args.config.read_text()
        except PermissionError as err:
            raise OpsError(f"{args.config}: {err.strerror} (needs root)") from None
        except OSError as err:
            raise OpsError(f"{args.config}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise OpsError(f"{args.config}: not a text file") from None
        if args.png is not None:
            _write_output(args.png, qr.png_bytes(text), "--png")
        else:
            sys.stdout.write(qr.render_terminal(text, invert=args.invert))
        return 0

    return _run(parser, argv, body)


def os_problem(err: OSError, subject: str) -> OpsError:
    """An OSError as one line for the operator. Reading interfaces, configs and the firewall
    takes root (CAP_NET_ADMIN, 0600 files, a 0700 socket directory): a non-root run says so
    instead of passing on whatever errno the first refused step happened to give."""
    reason = err.strerror or str(err)
    if isinstance(err, PermissionError) or not running_as_root():
        return OpsError(f"{subject}: {reason}: this needs root (run as root)")
    return OpsError(f"{subject}: {reason}")


# -- doctor ---------------------------------------------------------------------------------------


def _doctor_one(ifname: str | None, config_path: Path | None, control: DeviceControl,
                named: bool) -> tuple[str, list[doctor.Finding]]:
    """Check one interface and/or config. `named`: the operator named the interface (so it
    not running is a failure), rather than doctor taking the name from the config file."""
    findings: list[doctor.Finding] = []
    config = None
    if config_path is not None:
        try:
            config = serverconf.load(config_path).config
        except ConfigError as err:
            findings.append(doctor.Finding("config", doctor.Status.FAIL, str(err),
                                           "fix that line; wg-quick would refuse the file"))
        except PermissionError as err:
            raise os_problem(err, str(config_path)) from None
        except OSError as err:
            findings.append(doctor.Finding("config", doctor.Status.FAIL,
                                           f"{config_path}: {err.strerror}",
                                           "give the right file with --config"))
    elif ifname is not None:
        findings.append(doctor.Finding(
            "config", doctor.Status.WARN,
            f"no config at {serverconf.default_config_path(ifname)}: config checks skipped",
            "give the interface's config with --config"))
    live = None
    if ifname is not None:
        try:
            live = control.get(ifname)
        except OSError as err:
            if isinstance(err, PermissionError) or (named and not running_as_root()):
                raise os_problem(err, f"cannot read interface {ifname}") from None
            findings.append(doctor.Finding(
                "interface", doctor.Status.FAIL if named else doctor.Status.WARN,
                f"{ifname} is not running ({err.strerror or err})"
                + ("" if named else ": live checks skipped"),
                f"wgpy-quick up {config_path or ifname}"))
    title = " / ".join(str(x) for x in (ifname, config_path) if x is not None)
    if config is None and live is None:
        # nothing to check: say so, instead of a page of "ok" about nothing
        return title, findings
    subject = doctor.build_subject(ifname, config,
                                   str(config_path) if config_path else None, live)
    paths = ([config_path] if config_path else []) + [Path(p) for p in subject.key_files]
    host = system.gather(paths, doctor.route_probes(subject))
    findings += doctor.run_checks(subject, host)
    return title, findings


def cmd_doctor(argv: Sequence[str]) -> int:
    parser = _parser(argv, "Check an interface and its config against the production "
                           "checklist; exit 1 if any check fails.")
    parser.add_argument("interface", nargs="?")
    parser.add_argument("--config", type=Path,
                        help="config file (default /etc/wireguard/IFACE.conf if it exists)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")

    def body(args: argparse.Namespace) -> int:
        control = control_factory()
        targets: list[tuple[str | None, Path | None, bool]] = []
        if args.interface or args.config:
            config = args.config
            if config is None:
                default = serverconf.default_config_path(args.interface)
                config = default if default.exists() else None
            # wg-quick names the interface after its config file
            ifname = args.interface or (args.config.stem if args.config else None)
            targets.append((ifname, config, bool(args.interface)))
        else:
            try:
                names = control.list_interfaces()
            except OSError:
                try:
                    names = control.uapi.list_interfaces()
                except OSError as err:
                    raise os_problem(err, "cannot list the WireGuard interfaces") from None
            for name in names:
                default = serverconf.default_config_path(name)
                targets.append((name, default if default.exists() else None, True))
            if not targets:
                raise OpsError("no WireGuard interface running; name one or give --config")
        reports = [_doctor_one(ifname, config, control, named)
                   for ifname, config, named in targets]
        failed = any(doctor.has_failures(findings) for _, findings in reports)
        if args.json:
            document = {
                "ok": not failed,
                "reports": [{"target": title, "findings": [f.as_json() for f in findings]}
                            for title, findings in reports],
            }
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        else:
            for title, findings in reports:
                sys.stdout.write(doctor.format_text(findings, title))
        return 1 if failed else 0

    return _run(parser, argv, body)


# -- check-handshakes -----------------------------------------------------------------------------


def cmd_check_handshakes(argv: Sequence[str]) -> int:
    parser = _parser(argv, "List peers whose latest handshake is too old; exit 1 if any.")
    parser.add_argument("interface")
    parser.add_argument("--max-age", type=int, default=monitor.DEFAULT_MAX_AGE,
                        help=f"seconds (default {monitor.DEFAULT_MAX_AGE})")
    parser.add_argument("--config", type=Path, help="for peer names (default "
                        "/etc/wireguard/IFACE.conf)")
    parser.add_argument("--ignore-never", action="store_true",
                        help="do not count peers that never handshaked")

    def body(args: argparse.Namespace) -> int:
        try:
            state = control_factory().get(args.interface)
        except OSError as err:
            raise os_problem(err, args.interface) from None
        names = peers.config_names(args.config or serverconf.default_config_path(args.interface))
        stale = monitor.stale_peers(state, time.time(), args.max_age, names,
                                    include_never=not args.ignore_never)
        for peer in stale:
            sys.stdout.write(peer.describe() + "\n")
        return 1 if stale else 0

    return _run(parser, argv, body)


# -- exporter -------------------------------------------------------------------------------------


def cmd_exporter(argv: Sequence[str]) -> int:
    parser = _parser(argv, "Serve Prometheus metrics (prometheus_wireguard_exporter's names) "
                           "on /metrics.")
    parser.add_argument("--listen", default=f"0.0.0.0:{exporter.DEFAULT_PORT}",
                        help=f"ADDR:PORT (default 0.0.0.0:{exporter.DEFAULT_PORT})")
    parser.add_argument("--interface", "-i", action="append", default=[],
                        help="only these interfaces (repeatable; default all)")
    parser.add_argument("--config-dir", type=Path, default=serverconf.DEFAULT_CONFIG_DIR,
                        help="where IFACE.conf files give peer names (default /etc/wireguard)")

    def body(args: argparse.Namespace) -> int:
        try:
            host, port = exporter.parse_listen(args.listen)
        except ValueError as err:
            raise OpsError(str(err)) from None
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        collector = exporter.WireGuardCollector(control_factory, args.interface, args.config_dir)
        try:
            served = collector.check()
        except OSError as err:
            raise os_problem(err, f"cannot read interface {err.filename}" if err.filename
                             else "cannot list the WireGuard interfaces") from None
        try:
            server = exporter.serve(host, port, collector)
        except OSError as err:
            raise OpsError(f"cannot listen on {args.listen}: {err.strerror}") from None
        what = ", ".join(served) if served else "no interface yet"
        sys.stderr.write(f"wgpy exporter: serving /metrics on {args.listen} ({what})\n")
        sys.stderr.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        server.shutdown()
        server.server_close()
        return 0

    return _run(parser, argv, body)


# -- peers by name -------------------------------------------------------------------------------


def _load_optional(path: Path) -> serverconf.ServerConfig | None:
    try:
        return serverconf.load(path)
    except FileNotFoundError:
        return None
    except ConfigError as err:
        raise OpsError(f"cannot parse the config: {err}") from None
    except OSError as err:
        raise os_problem(err, str(path)) from None


def cmd_peers(argv: Sequence[str]) -> int:
    parser = _parser(argv, "List an interface's peers by name: addresses, endpoint, latest "
                           "handshake, transfer, enabled/disabled (live and from the config).")
    parser.add_argument("interface")
    parser.add_argument("--config", type=Path, help="server config (default "
                        "/etc/wireguard/IFACE.conf)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")

    def body(args: argparse.Namespace) -> int:
        config_path = args.config or serverconf.default_config_path(args.interface)
        server = _load_optional(config_path)
        try:
            live = control_factory().get(args.interface)
        except OSError as err:
            if isinstance(err, PermissionError) or not running_as_root() or server is None:
                raise os_problem(err, f"cannot read interface {args.interface}") from None
            live = None
        table = peers.rows(server, live)
        now = int(time.time())
        if args.json:
            document = {"interface": args.interface, "running": live is not None,
                        "config": str(config_path) if server is not None else None,
                        "peers": [peers.as_json(row, now) for row in table]}
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
            return 0
        if live is None:
            sys.stderr.write(f"{args.interface} is not running: peers from {config_path}\n")
        sys.stdout.write(peers.format_table(table, now, live is not None))
        return 0

    return _run(parser, argv, body)


def _toggle(argv: Sequence[str], enable: bool) -> int:
    verb = "enable" if enable else "disable"
    parser = _parser(argv, (
        "Put a disabled peer back on the running interface and in effect in the config."
        if enable else
        "Take a peer off the running interface and comment it out in the config (kept, "
        "marked '#disabled# '), so wg-quick and wgpy-quick leave it out until enable-peer."))
    parser.add_argument("interface")
    parser.add_argument("peer", help="the peer's name or public key")
    parser.add_argument("--config", type=Path, help="server config (default "
                        "/etc/wireguard/IFACE.conf)")

    def body(args: argparse.Namespace) -> int:
        function = peers.enable_peer if enable else peers.disable_peer
        config_path = args.config or serverconf.default_config_path(args.interface)
        try:
            result = function(args.interface, args.peer, config_path, control_factory())
        except PermissionError as err:
            raise os_problem(err, err.filename or str(config_path)) from None
        except OpsError as err:  # the config could not be read: say why
            if not running_as_root() and "Permission denied" in str(err):
                raise OpsError(f"{err}: this needs root (run as root)") from None
            raise
        label = repr(result.name) if result.name else key_to_base64(result.public_key)
        done = [what for what, changed in (
            ("the config", result.changed),
            ("the running interface", result.live)) if changed]
        if done:
            sys.stderr.write(f"{verb}d peer {label} in {' and '.join(done)}\n")
        else:
            sys.stderr.write(f"peer {label} was already {verb}d\n")
        return 0

    return _run(parser, argv, body)


def cmd_disable_peer(argv: Sequence[str]) -> int:
    return _toggle(argv, enable=False)


def cmd_enable_peer(argv: Sequence[str]) -> int:
    return _toggle(argv, enable=True)


# -- the table ------------------------------------------------------------------------------------

SUBCOMMANDS: list[tuple[str, Callable[[Sequence[str]], int], str]] = [
    ("add-peer", cmd_add_peer, "Adds a peer (keys, address, config, QR code) to an interface"),
    ("remove-peer", cmd_remove_peer, "Removes a peer by name or public key"),
    ("peers", cmd_peers, "Lists an interface's peers by name, enabled and disabled"),
    ("disable-peer", cmd_disable_peer, "Takes a peer offline, keeping it in the config"),
    ("enable-peer", cmd_enable_peer, "Puts a disabled peer back"),
    ("qr", cmd_qr, "Shows a config file as a QR code"),
    ("doctor", cmd_doctor, "Checks an interface and its config for common mistakes"),
    ("check-handshakes", cmd_check_handshakes, "Lists peers with stale handshakes (exit 1)"),
    ("exporter", cmd_exporter, "Serves Prometheus metrics of the interfaces"),
]
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {name: fn for name, fn, _ in SUBCOMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        sys.stderr.write(f"Usage: python -m wgpy.cli.ops {{{names}}} [ARGS]\n")
        return 1
    return COMMANDS[args[0]](args)


if __name__ == "__main__":
    sys.exit(main())
