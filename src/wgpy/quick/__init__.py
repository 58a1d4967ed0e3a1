"""wgpy-quick: bring a WireGuard interface up or down from a wg-quick configuration file.

The steps and their order follow wg-quick(8) on Linux, so the same files work unchanged:
`config` finds and validates the file, `up`/`down` run the plan, and the helpers (`device`,
`firewall`, `dns`, `hooks`) each own one kind of side effect.
"""
