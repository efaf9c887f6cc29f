"""``cl-client guest-mode get|set`` and the ``admin`` group of upstream's CLI spellings (``admin compute
capabilities``, ``admin compute guest-mode get|set``, ``admin guest-mode get|set``)."""

from __future__ import annotations

import click
from pydantic import JsonValue

from cl_client._cli_common import CliState, alias, handled, state, terminal_safe
from cl_client._cli_jobs import capabilities, format_timestamp
from cl_client._models import GuestModeConfig


def _config_json(config: GuestModeConfig) -> dict[str, JsonValue]:
    routes = config.routes
    return {
        "guest_mode": config.guest_mode,
        "routes": routes.value if routes else None,
        "release": routes.release if routes else None,
        "read_path": routes.read_path if routes else None,
        "write_path": routes.write_path if routes else None,
        "updated_at": config.updated_at,
        "updated_by": config.updated_by,
        "message": config.message,
    }


def _print_config(st: CliState, config: GuestModeConfig, *, wrote: bool) -> None:
    if st.json:
        st.print_json(_config_json(config))
        return
    routes = config.routes
    path = (routes.write_path if wrote else routes.read_path) if routes else "?"
    via = f"{'PUT' if wrote else 'GET'} {path}" + (f", {routes.release} routes" if routes else "")
    line = f"guest mode {'on' if config.guest_mode else 'off'} (via {via})"
    if config.updated_at is not None:
        line += f"; last changed {format_timestamp(config.updated_at)}"
        line += f" by {config.updated_by}" if config.updated_by else ""
    if config.message:
        line += f"; server: {config.message}"
    st.out.print(terminal_safe(line), markup=False)


@click.group("guest-mode")
def guest_mode_group() -> None:
    """Read or change guest mode (admin), on January 2026 (/admin/config) and February 2026 (/admin/pref) servers.

    With guest mode on, the job routes need no token.
    """


@guest_mode_group.command("get")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def guest_mode_get(ctx: click.Context, as_json: bool) -> None:
    """Show whether guest mode is on, and which route set the server answered on."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        _print_config(st, client.get_guest_mode_config(), wrote=False)


@guest_mode_group.command("set")
@click.argument("value", type=click.BOOL, metavar="on|off")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.pass_context
def guest_mode_set(ctx: click.Context, value: bool, as_json: bool) -> None:
    """Turn guest mode on or off (also true/false, yes/no, 1/0); shows what the server reports now."""
    st = state(ctx)
    st.json = st.json or as_json
    with handled(ctx), st.client(events=False) as client:
        _print_config(st, client.set_guest_mode_config(value), wrote=True)


@click.group("compute")
def admin_compute() -> None:
    """Compute administration, as upstream's CLI spells it (`admin compute ...`)."""


admin_compute.add_command(alias(capabilities, "capabilities", "capabilities"))
admin_compute.add_command(guest_mode_group)


@click.group("admin")
def admin_group() -> None:
    """Administration commands under upstream's CLI names (`admin compute capabilities`, `admin compute
    guest-mode get|set`); `admin guest-mode` is the same as `guest-mode`."""


admin_group.add_command(admin_compute)
admin_group.add_command(guest_mode_group)
