"""``registry-combiner``: the business partners register's combiner and service."""

from __future__ import annotations

from sample_protocol.cli_commands import add_audit_commands, add_keys_commands
from sample_protocol.cli_support import App

from ._cli_serve import register as _register_serve
from ._cli_store import register as _register_store

app = App(
    prog="registry-combiner",
    help=(
        "Ingest signed preliminary-index batches and direct feeds, combine them into the four "
        "scoring indexes, and serve reports with every check logged.\n\n"
        "Exit codes: 0 done, 1 failure, 2 bad input, 3 refused."
    ),
)
app.add_version_option()
add_keys_commands(app)
add_audit_commands(app)
_register_store(app)
_register_serve(app)


def main() -> None:
    app.main()
