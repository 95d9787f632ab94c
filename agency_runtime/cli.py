"""``agency-runtime``: what an operator in a state body runs inside the perimeter."""

from __future__ import annotations

from sample_protocol.cli_commands import add_audit_commands, add_keys_commands
from sample_protocol.cli_support import App

from ._cli_monitor import register as _register_monitor
from ._cli_sample import register as _register_sample
from ._cli_score import register as _register_score

app = App(
    prog="agency-runtime",
    help=(
        "Run the NCE's signed scoring models inside a state body's protected perimeter.\n\n"
        "Everything here works on files: verify a release bundle, score your own population, "
        "and send out only preliminary indexes. Exit codes: 0 done, 1 failure, 2 bad input, "
        "3 refused."
    ),
)
app.add_version_option()
add_keys_commands(app)
add_audit_commands(app)
_register_sample(app)
_register_score(app)
_register_monitor(app)


def main() -> None:
    app.main()
