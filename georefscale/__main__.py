"""``python -m georefscale ...``: the ``georefscale`` command, where its script is not installed."""

from georefscale.cli import main

main(prog_name="georefscale")
