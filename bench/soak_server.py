"""`python -m bench.soak_server`: one roadrunner worker in this process, its registry on demand.

The soak counts the tasks and connections left in the server's registry (`ServerState.tasks`,
`.connections`), which nothing in production exposes. This process serves bench.apps:app through
`roadrunner.Server` as `roadrunner` with one worker does (no supervisor, the same flags as
bench.servers), and on SIGUSR2 writes a JSON snapshot of the registry to --stats-file. The hook
lives here, so production code carries nothing for it.

    python -m bench.soak_server --port 8000 --protocols h1,h2 --stats-file /tmp/registry.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.servers import APP, Launch
from roadrunner import Config, Server
from roadrunner.loops import asyncio_run, get_loop_factory

DUMP_SIGNAL = signal.SIGUSR2


def snapshot(state: Any, sequence: int) -> dict[str, Any]:
    """The registry's size, and what is in it by type (to name a leak when there is one)."""
    tasks = list(state.tasks)
    connections = list(state.connections)
    return {
        "sequence": sequence,
        "tasks": len(tasks),
        "connections": len(connections),
        "task_names": dict(Counter(task.get_coro().__qualname__ for task in tasks)),
        "connection_types": dict(Counter(type(c).__name__ for c in connections)),
        "total_requests": state.total_requests,
    }


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write then rename, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)


def config_for(launch: Launch) -> Config:
    """bench.servers' roadrunner command line as a Config (h2c: h1,h2 without TLS)."""
    protocols = sorted(launch.protocols | ({"h1", "h2"} if "h2c" in launch.protocols else set()))
    return Config(
        APP, host=launch.host, port=launch.port, loop="uvloop", http="httptools",
        access_log=False, log_level="warning", timeout_keep_alive=launch.keep_alive,
        backlog=launch.backlog, protocols=[p for p in protocols if p != "h2c"],
    )


async def serve(server: Server, stats_file: Path) -> None:
    sequence = 0

    def dump() -> None:  # on the loop, between callbacks: the registry is consistent
        nonlocal sequence
        sequence += 1
        write_atomically(stats_file, snapshot(server.server_state, sequence))

    asyncio.get_running_loop().add_signal_handler(DUMP_SIGNAL, dump)
    await server.serve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocols", default="h1", help="h1, or h1,h2c")
    parser.add_argument("--stats-file", type=Path, required=True)
    args = parser.parse_args(argv)
    launch = Launch(args.host, args.port, protocols=frozenset(args.protocols.split(",")))
    config = config_for(launch)
    server = Server(config)
    asyncio_run(serve(server, args.stats_file), loop_factory=get_loop_factory(config.loop))
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
