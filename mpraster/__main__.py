"""``python -m mpraster``: the same as the ``mpraster`` command."""

from mpraster.cli import main

main()
