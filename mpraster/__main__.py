"""``python -m mpraster``: the same as the ``mpraster`` command."""

from mpraster.command import main

# Guarded: MPI and multiprocessing workers import the main module of the process that
# started them, and must not run the command again.
if __name__ == "__main__":
    main()
