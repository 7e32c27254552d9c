"""A small game server for the development daemon to run.

It prints a boot log, listens on its TCP port (each connection gets a one-line
greeting and is closed), takes console commands on standard input, ticks a little
CPU and holds a few MB of memory, so that a panel has something real to show.
Standard library only: the install script copies this file next to the server.
"""

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

BALLAST_MB = 4
BOOT_STEP_S = 0.2
TICK_S = 0.05
COMMANDS = {
    "help": "list the commands",
    "say <text>": "broadcast a message",
    "list": "show the players online",
    "stop": "save and stop the server",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} INFO]: {message}", flush=True)


class Game:
    def __init__(self, ip: str, port: int, memory_mb: int) -> None:
        self.ip = ip
        self.port = port
        self.memory_mb = memory_mb
        self.players = 0
        self.lock = threading.Lock()
        self.motd = read_motd()
        self.ballast = b""

    def boot(self) -> socket.socket:
        log("Starting StellarCraft game server 1.0")
        time.sleep(BOOT_STEP_S)
        log(f"Loading properties; message of the day: {self.motd}")
        time.sleep(BOOT_STEP_S)
        megabytes = min(BALLAST_MB, self.memory_mb)
        log(f"Preparing level 'world' in {megabytes} MB of {self.memory_mb} MB")
        # Filled with ones rather than zeros, so the pages are really resident.
        self.ballast = b"\x01" * (megabytes * 1024 * 1024)
        time.sleep(BOOT_STEP_S)
        log("Preparing spawn area: 100%")
        listener = socket.create_server((self.ip, self.port))
        time.sleep(BOOT_STEP_S)
        log(f"Done! Listening on {self.ip}:{self.port}")
        return listener

    def serve(self, listener: socket.socket) -> None:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=self.greet, args=(connection,), daemon=True).start()

    def greet(self, connection: socket.socket) -> None:
        with self.lock:
            self.players += 1
        try:
            with connection:
                greeting = f"Welcome to {self.motd}! Players online: {self.players}\n"
                connection.sendall(greeting.encode())
        except OSError:
            pass  # the player left before the greeting
        finally:
            with self.lock:
                self.players -= 1

    def tick(self) -> None:
        while True:
            sum(number * number for number in range(2000))
            time.sleep(TICK_S)

    def console(self) -> None:
        for line in sys.stdin:
            if not self.command(line.strip()):
                return
        log("Console closed, stopping the server")

    def command(self, line: str) -> bool:
        """Run one console command; False once the server should stop."""
        name, _, rest = line.partition(" ")
        if name == "help":
            for usage, what in COMMANDS.items():
                log(f"{usage}: {what}")
        elif name == "say" and rest:
            log(f"[Server] {rest}")
        elif name == "list":
            log(f"There are {self.players} players online")
        elif name == "stop":
            log("Stopping the server; saving the world")
            return False
        elif name:
            log(f"Unknown command {name!r}. Type 'help' for help.")
        return True


def read_motd() -> str:
    try:
        lines = Path("server.properties").read_text().splitlines()
    except OSError:
        return "a StellarCraft server"
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    return values.get("motd", "a StellarCraft server")


def terminate(number: int, frame: FrameType | None) -> None:
    log(f"Received {signal.Signals(number).name}, stopping the server")
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A small game server.")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--memory", type=int, default=1024, help="memory limit, MB")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)

    game = Game(args.ip, args.port, args.memory)
    try:
        listener = game.boot()
    except OSError as error:
        log(f"Cannot listen on {args.ip}:{args.port}: {error.strerror}")
        return 1
    threading.Thread(target=game.serve, args=(listener,), daemon=True).start()
    threading.Thread(target=game.tick, daemon=True).start()
    game.console()
    return 0


if __name__ == "__main__":
    sys.exit(main())
