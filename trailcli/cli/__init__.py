"""The `trail` command line: one Typer app, one sub-app or command per file."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli import __version__
from trailcli.cli import collect, compact, export, forget, sql_cmd
from trailcli.cli import publish as publish_cmd
from trailcli.cli import sample as sample_cmd
from trailcli.cli.import_cmd import import_app
from trailcli.cli.online import online_app
from trailcli.cli.replay import replay as replay_command
from trailcli.cli.report_funnel import funnel as funnel_command
from trailcli.cli.report_pages import pages
from trailcli.cli.report_paths import paths
from trailcli.cli.report_referrers import referrers
from trailcli.cli.wal import wal_app

app = typer.Typer(
    name="trail",
    help="Who is online on your website now, who was online at any moment, and what each person did.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
report_app = typer.Typer(help="Product analytics reports over the event log.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        print(f"trail {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """trail: presence and product analytics from your own logs."""


# The daemon, the questions it answers, then the tools (`--help` lists groups after commands).
app.command("collect")(collect.collect)
app.add_typer(online_app, name="online")
app.command("replay")(replay_command)
app.add_typer(report_app, name="report")
report_app.command("funnel")(funnel_command)
report_app.command("referrers")(referrers)
report_app.command("paths")(paths)
report_app.command("pages")(pages)
app.command("sql")(sql_cmd.sql)
app.command("publish")(publish_cmd.publish)
app.command("compact")(compact.compact)
app.command("forget")(forget.forget)
app.command("export")(export.export)
app.add_typer(import_app, name="import")
app.command("sample")(sample_cmd.sample)
app.add_typer(wal_app, name="wal")


def main() -> None:
    app()
