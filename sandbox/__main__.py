"""`python -m sandbox`: the emulator's server (see sandbox.server). moto files model classes under their module's
name, so nothing is defined here, where the module is called "__main__"."""

from sandbox.server import main

main()
