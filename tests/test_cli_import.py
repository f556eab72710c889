"""`trail --help` stays instant: the CLI imports no heavy library until a command needs it."""

import subprocess
import sys

HEAVY = ("duckdb", "polars", "deltalake", "aiohttp", "pyarrow")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from trailcli.cli import app\n"
        "from typer.testing import CliRunner\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_rich_only_when_a_table_is_drawn() -> None:
    """rich draws the table format; importing the CLI or printing the version does not load it."""
    code = (
        "import sys\n"
        "from trailcli.cli import app\n"
        "from typer.testing import CliRunner\n"
        "result = CliRunner().invoke(app, ['--version'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('rich' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version(run_cli) -> None:
    from trailcli import __version__

    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"trail {__version__}"
