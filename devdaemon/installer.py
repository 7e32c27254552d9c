"""The development daemon's install script: puts a game server in the current directory.

The daemon runs it with the server's directory as the working directory and the
server's environment (SERVER_IP, SERVER_PORT, SERVER_MEMORY and the config's own
variables); every line it prints is an "install output" line. Exit 0 is success.
Standard library only: it must run with any Python.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gameserver", type=Path, required=True)
    args = parser.parse_args(argv)
    target = Path.cwd()

    say(f"Installing a game server into {target}")
    try:
        say("Copying gameserver.py")
        shutil.copyfile(args.gameserver, target / "gameserver.py")
        say("Writing server.properties")
        (target / "server.properties").write_text(properties())
        say("Accepting the EULA in eula.txt")
        (target / "eula.txt").write_text("eula=true\n")
    except OSError as error:
        say(f"Install failed: {error}")
        return 1
    say("Install complete")
    return 0


def properties() -> str:
    values = {
        "server-ip": os.environ.get("SERVER_IP", "0.0.0.0"),
        "server-port": os.environ.get("SERVER_PORT", "25565"),
        "max-memory-mb": os.environ.get("SERVER_MEMORY", "1024"),
        "motd": os.environ.get("MOTD", "A StellarPanel server"),
    }
    lines = [f"{key}={value}" for key, value in values.items()]
    return (
        "# Written by the StellarPanel development daemon's installer.\n"
        + "\n".join(lines)
        + "\n"
    )


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
