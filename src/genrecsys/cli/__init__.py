"""Command-line interface: a thin table of subcommands over the Python API."""
