from ednaml.cli import console

console()
