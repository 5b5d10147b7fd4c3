"""The `hashfleet` command line: one module per command, registered here.

Commands that belong to other folders (the simulators) register themselves through the
`hashfleet.commands` entry-point group in pyproject.toml, so collector/ never imports them:
collector and simulators meet only on the wire.
Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import logging
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import typer

from collector.commands import advise, backtest, collect, cost, grafana, health, poll, pools, report, scan, watch
from collector.commands.common import fail_usage
from collector.redact import RedactingFilter, traceback_text
from models.base import printable

app = typer.Typer(
    name="hashfleet",
    help="Mining-fleet telemetry and live all-in cost per BTC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@app.callback()
def _root(
    log_level: str = typer.Option("INFO", "--log-level", envvar="HASHFLEET_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    if log_level.upper() not in LOG_LEVELS:  # (logging's own refusal is a traceback: a service crash-looping)
        fail_usage(f"--log-level (or HASHFLEET_LOG_LEVEL) {printable(log_level)!r}: one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # whatever a library logs, URL credentials stay hidden
        handler.addFilter(RedactingFilter())
        handler.addFilter(PrintableLog())
    if logging.getLogger().level > logging.DEBUG:  # httpx logs every request at INFO: a line per pool call
        logging.getLogger("httpx").setLevel(logging.WARNING)
    warnings.showwarning = _pyasic_warnings_to_log


class PrintableLog(logging.Filter):
    """Every log line printable, the last line of defence: a miner's, a publisher's or a library's text may
    hold an escape sequence (recolours or clears the operator's terminal) or a newline (forges a log line).
    A traceback keeps its lines, each made printable (an exception's text quotes what it failed on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = printable(message), None
        if traceback := traceback_text(record):
            record.exc_text = "\n".join(map(printable, traceback.split("\n")))
        return True


_show_warning = warnings.showwarning


# pyasic warns of what it reads ("Partially supported miner found ... open an issue on GitHub"), and
# asyncssh, which it imports, of DSA's deprecation in cryptography (five warnings at import, on the
# demo's first screen): nothing the operator can act on, so they go to the log (DEBUG), not the terminal.
_QUIET_PACKAGES = ("pyasic", "asyncssh")


def _pyasic_warnings_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    parts = Path(filename).parts
    if any(name in parts for name in _QUIET_PACKAGES):  # (logged as pyasic's: asyncssh's logger is at WARNING)
        logging.getLogger("pyasic").debug("%s: %s (%s:%s)", category.__name__, message, filename, lineno)
    else:
        _show_warning(message, category, filename, lineno, file, line)


app.command()(poll.poll)
app.command()(collect.collect)
app.command()(scan.scan)
app.command()(watch.watch)
app.command()(report.report)
app.command()(health.health)
app.command(name="cost")(cost.cost)
app.command()(pools.pools)
app.command()(advise.advise)
app.command()(backtest.backtest)
app.add_typer(grafana.grafana_app, name="grafana")


def _register_plugins() -> None:
    for ep in entry_points(group="hashfleet.commands"):
        try:
            app.command(name=ep.name)(ep.load())
        except ImportError as e:  # a broken plugin must not take the other commands down
            print(f"hashfleet: command {ep.name!r} unavailable: {e}", file=sys.stderr)


def main() -> None:
    _register_plugins()
    app()
