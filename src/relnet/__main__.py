"""The `relnet` command (and `python -m relnet`): relnet.cli, entered from a module that imports
nothing first, so that a Ctrl-C at any moment of start-up ends as one line and status 130."""

import sys


def main() -> int:
    try:
        from relnet.cli import main as run_command  # (argparse and the rest load here)

        return run_command()
    except KeyboardInterrupt:  # before relnet.cli.main could take it
        print("relnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
