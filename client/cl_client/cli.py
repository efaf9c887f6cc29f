"""``cl-client``: run the nine plugins from a shell, watch jobs and workers.

Exit codes: 0 success, 1 a job failed (or timed out), 2 usage error, 3 connection or auth problem. Errors are
one line on stderr; ``--debug`` adds the traceback. Global options override the same environment variables as
the library (``CL_SERVER_URL``/``COMPUTE_URL``, ``CL_MQTT_URL``/``MQTT_URL``, ``CL_AUTH_URL``/``AUTH_URL``,
``CL_TOKEN``, ``CL_USERNAME``, ``CL_PASSWORD``, ``CL_TIMEOUT``).
"""

from __future__ import annotations

import sys

import click

from cl_client._cli_admin import admin_group, guest_mode_group
from cl_client._cli_certify import certify
from cl_client._cli_common import CliState, alias, handled, sigterm_stops_like_ctrl_c, state
from cl_client._cli_jobs import capabilities, health, job_download, job_group, workers
from cl_client._cli_jobstore import jobs_group
from cl_client._cli_load import load
from cl_client._cli_plugins import plugin_groups

_CONTEXT = {"help_option_names": ["--help"], "max_content_width": 110}


class _RootGroup(click.Group):
    """The root group: library errors while parsing a sub-command also become one line and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the sub-command with the error mapping of ``handled``."""
        with handled(ctx):
            return super().invoke(ctx)  # pyright: ignore[reportAny]


@click.group(cls=_RootGroup, context_settings=_CONTEXT)
@click.version_option(package_name="cl-client", prog_name="cl-client")
@click.option(
    "--server",
    "--compute-url",
    "server",
    metavar="URL",
    default=None,
    help="Compute API URL [env CL_SERVER_URL, COMPUTE_URL]; --compute-url is upstream's name.",
)
@click.option(
    "--mqtt",
    "--mqtt-url",
    "mqtt",
    metavar="URL",
    default=None,
    help="Broker URL, or 'off' to poll [env CL_MQTT_URL, MQTT_URL]; --mqtt-url is upstream's name.",
)
@click.option("--token", metavar="JWT", default=None, help="Bearer token [env CL_TOKEN].")
@click.option("--username", default=None, help="Log in at the auth service [env CL_USERNAME].")
@click.option("--password", default=None, help="Password for --username [env CL_PASSWORD].")
@click.option("--auth-url", metavar="URL", default=None, help="Auth service URL [env CL_AUTH_URL, AUTH_URL].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="HTTP timeout in seconds [env CL_TIMEOUT].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine output (JSON on stdout) for every command.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(
    ctx: click.Context,
    server: str | None,
    mqtt: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
    auth_url: str | None,
    timeout: float | None,
    as_json: bool,
    debug: bool,
) -> None:
    """cl-client: submit jobs to a CL compute deployment and read their results.

    \b
    Examples:
      cl-client --server http://localhost:8002 health
      cl-client clip-embedding embed a.jpg b.jpg --output vectors/
      cl-client hls-streaming generate clip.mp4 --variant 720:3500 --variant 480:1500 -o hls/
      cl-client --json hash compute photo.jpg --algorithm md5
      cl-client workers --watch
      cl-client guest-mode set off
      cl-client jobs usage
      cl-client jobs clean --mine
      cl-client certify http://localhost:8002 -n 4
    """  # noqa: D301 - click needs the backspace of "\b" (no raw string)
    st = state(ctx)
    st.server, st.mqtt, st.token = server, mqtt, token
    st.username, st.password, st.auth_url = username, password, auth_url
    st.timeout, st.json, st.debug = timeout, as_json, debug


for _group in plugin_groups():
    cli.add_command(_group)
for _command in (job_group, jobs_group, capabilities, workers, health, guest_mode_group, admin_group, certify, load):
    cli.add_command(_command)
cli.add_command(alias(job_download, "download", "job download"))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``cl-client``)."""
    with sigterm_stops_like_ctrl_c():  # downloads clean up on SIGTERM as on Ctrl-C
        cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="cl-client", obj=CliState())


if __name__ == "__main__":  # pragma: no cover
    main()
