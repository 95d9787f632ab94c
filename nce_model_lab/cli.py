"""``nce-lab``: the NCE data scientists' tool."""

from __future__ import annotations

from sample_protocol.cli_commands import add_audit_commands, add_keys_commands
from sample_protocol.cli_support import App

from ._cli_demo import register as _register_demo
from ._cli_sample import register as _register_sample
from ._cli_synth import synth
from ._cli_train import register as _register_train
from ._cli_train_table import register as _register_train_table
from ._cli_trust import register as _register_trust

app = App(
    prog="nce-lab",
    help=(
        "The NCE's modelling lab: request depersonalised samples from state bodies, train "
        "one model per (source, index) plus the combiners, and ship them as signed ONNX "
        "release bundles.\n\nExit codes: 0 done, 1 failure, 2 bad input, 3 refused."
    ),
)
app.add_version_option()
add_keys_commands(app)
add_audit_commands(app)
_register_trust(app)
_register_sample(app)
_register_train(app)
_register_train_table(app)
app.command("synth")(synth)
_register_demo(app)


def main() -> None:
    app.main()
