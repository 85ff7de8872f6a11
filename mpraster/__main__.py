"""``python -m mpraster``: the same as the ``mpraster`` command."""

from mpraster.cli import main

# Guarded: MPI and multiprocessing workers import the main module of the process that
# started them, and must not run the command again.
if __name__ == "__main__":
    main()
