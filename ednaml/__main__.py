"""`python -m ednaml`: the `ednaml` command. The package's __init__ has already taken the working directory
off sys.path (ednaml.startup), before anything else was imported."""

from ednaml.cli import console

console()
