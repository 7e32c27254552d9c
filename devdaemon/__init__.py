"""StellarPanel's development daemon.

It speaks the panel <-> daemon protocol (docs/PROTOCOL.md) and runs each game server
as a plain local process: no containers, no resource enforcement. It imports nothing
from the panel; the two meet only through the protocol.
"""

__version__ = "0.1.0"
