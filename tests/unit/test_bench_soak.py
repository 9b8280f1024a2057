"""The soak's pieces: the WebSocket open/close client, the fd reader, the registry dump, the
pass/fail rules, the h2load command and the report section; the churn client and the registry
against a real roadrunner serving the benchmark app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bench import procstat, soak, soak_server, soak_ws, ws
from bench.apps import app as bench_app
from bench.servers import Launch
from roadrunner.server import ServerState
from tests.helpers import run_server

# -- the WebSocket open/close client -------------------------------------------------------------


def test_close_frame_is_masked_and_carries_the_code() -> None:
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    frame = soak_ws.close_frame(1000, key)
    # RFC 6455 §5.2: FIN + opcode 8, MASK + length 2, the key, then 0x03E8 masked (§5.3).
    assert frame[:6] == bytes([0x88, 0x82]) + key
    assert ws.mask(frame[6:], key) == (1000).to_bytes(2, "big")


def test_close_code_reads_the_status_or_none() -> None:
    assert soak_ws.close_code(b"\x03\xe8bye") == 1000
    assert soak_ws.close_code(b"") is None
    with pytest.raises(ws.ProtocolError):  # §5.5.1: a body starts with a 2-byte code
        soak_ws.close_code(b"\x03")


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def _client() -> tuple[soak_ws.OpenClose, FakeTransport, asyncio.Future[bool]]:
    loop = asyncio.new_event_loop()
    done: asyncio.Future[bool] = loop.create_future()
    client = soak_ws.OpenClose("127.0.0.1:1", "/ws", done)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport, done


def _switching(key: bytes) -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ws.accept_key(key) + b"\r\n\r\n")


def test_open_close_handshakes_closes_and_waits_for_the_servers_fin() -> None:
    client, transport, done = _client()
    assert transport.written[0].startswith(b"GET /ws HTTP/1.1\r\n")
    response = _switching(client.key) + bytes([0x88, 0x02]) + (1000).to_bytes(2, "big")
    for i in range(len(response)):  # any segmentation
        client.data_received(response[i:i + 1])
    close = transport.written[1]
    assert close[:2] == bytes([0x88, 0x82])
    assert ws.mask(close[6:], close[2:6]) == (1000).to_bytes(2, "big")
    assert client.closed_by_server == 1000 and not done.done()  # the server closes TCP first
    client.connection_lost(None)
    assert done.result() is True


def test_open_close_fails_without_the_servers_close_or_on_a_refusal() -> None:
    client, _, done = _client()
    client.data_received(_switching(client.key))
    client.connection_lost(None)  # TCP closed with no close frame
    assert done.result() is False
    client, transport, done = _client()
    client.data_received(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
    assert done.result() is False and transport.aborted
    client, _, done = _client()
    client.data_received(_switching(client.key) + bytes([0x88, 0x02]) + (1011).to_bytes(2, "big"))
    client.connection_lost(None)
    assert done.result() is False  # closed, but not normally


def test_churn_against_roadrunner_leaves_an_empty_registry() -> None:
    with run_server(bench_app) as server:
        result = asyncio.run(soak_ws.churn("127.0.0.1", server.port, "/ws", 50, 7))
        assert (result.completed, result.failed) == (50, 0) and result.duration_s > 0
        state = server.server.server_state
        for _ in range(100):
            if not state.connections and not state.tasks:
                break
            asyncio.run(asyncio.sleep(0.02))
        assert (len(state.tasks), len(state.connections)) == (0, 0)
        refused = asyncio.run(soak_ws.churn("127.0.0.1", server.port, "/other", 3, 2))
    assert (refused.completed, refused.failed) == (0, 3)


# -- /proc readers and the registry dump ---------------------------------------------------------


def test_open_fds_counts_the_fd_directory(tmp_path: Path) -> None:
    fd_dir = tmp_path / "42" / "fd"
    fd_dir.mkdir(parents=True)
    for fd in ("0", "1", "2", "7"):
        (fd_dir / fd).touch()
    assert procstat.open_fds(42, tmp_path) == 4
    before = procstat.open_fds(os.getpid())
    read, write = os.pipe()
    try:
        assert procstat.open_fds(os.getpid()) == before + 2
    finally:
        os.close(read)
        os.close(write)
    with pytest.raises(FileNotFoundError):
        procstat.open_fds(43, tmp_path)


def test_snapshot_counts_the_registry_by_type(tmp_path: Path) -> None:
    state = ServerState()

    async def request() -> None:
        await asyncio.sleep(10)

    async def scenario() -> dict[str, Any]:
        task = asyncio.get_running_loop().create_task(request())
        state.tasks.add(task)
        state.connections.update({object(), FakeTransport()})
        try:
            return soak_server.snapshot(state, 3)
        finally:
            task.cancel()

    document = asyncio.run(scenario())
    assert document["sequence"] == 3 and (document["tasks"], document["connections"]) == (1, 2)
    assert document["task_names"] == {"test_snapshot_counts_the_registry_by_type.<locals>.request": 1}
    assert document["connection_types"] == {"object": 1, "FakeTransport": 1}
    path = tmp_path / "registry.json"
    soak_server.write_atomically(path, document)
    assert json.loads(path.read_text()) == document
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind


def test_config_for_serves_h2c_as_h1_h2_without_tls() -> None:
    config = soak_server.config_for(Launch("127.0.0.1", 1, protocols=frozenset({"h2c"})))
    assert sorted(config.protocols) == ["h1", "h2"] and not config.is_ssl
    assert (config.http, config.loop, config.access_log) == ("httptools", "uvloop", False)
    assert config.timeout_keep_alive == 600 and config.backlog == 4096
    assert list(soak_server.config_for(Launch("127.0.0.1", 1)).protocols) == ["h1"]


def test_read_registry_signals_the_server_and_waits_for_a_new_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "registry.json"
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        soak_server.write_atomically(path, {"sequence": len(sent), "tasks": 0})

    monkeypatch.setattr(soak.os, "kill", kill)
    assert soak.read_registry(99, path)["sequence"] == 1
    assert soak.read_registry(99, path)["sequence"] == 2
    assert sent == [(99, signal.SIGUSR2)] * 2
    monkeypatch.setattr(soak.os, "kill", lambda pid, sig: None)  # the server never answers
    with pytest.raises(RuntimeError):
        soak.read_registry(99, path, timeout=0.1)


# -- pass/fail, the h2load command, the report ---------------------------------------------------


def _result(rss_after: int = 1000, fds_after: int = 14, left: tuple[int, int] = (0, 0),
            completed: int = 100, failed: int = 0) -> soak.PhaseResult:
    phase = soak.PHASES[0]
    load = soak.Load(completed, failed, 2.5)
    return soak.PhaseResult(phase, 100, soak.Load(10, 0, 0.1), load, soak.Reading(1000, 14, 0, 0),
                            soak.Reading(rss_after, fds_after, *left))


def test_phase_problems() -> None:
    assert _result(rss_after=1050).problems == [] and _result(rss_after=950).problems == []
    assert _result(rss_after=1051).problems == ["RSS changed +5.1%"]
    assert _result(rss_after=949).problems == ["RSS changed -5.1%"]
    assert _result(fds_after=13).problems == []
    assert _result(fds_after=16).problems == ["2 file descriptors gained"]
    assert _result(left=(1, 0)).problems[0].startswith("1 tasks, 0 connections left")
    assert _result(left=(0, 2)).problems[0].startswith("0 tasks, 2 connections left")
    assert _result(completed=99, failed=1).problems == ["1 of 100 requests failed"]
    assert _result(completed=99).problems == ["1 of 100 requests failed"]


def test_h2load_argv_per_protocol() -> None:
    h1, _, h2 = soak.PHASES
    assert soak.h2load_argv(h1, 8000, 50) == [
        "taskset", "-c", "1", "h2load", "-t1", "-c100", "-n50", "--h1",
        "http://127.0.0.1:8000/hello"]
    assert soak.h2load_argv(h2, 8000, 50)[-2:] == ["-m10", "http://127.0.0.1:8000/hello"]
    assert [p.count for p in soak.PHASES] == [1_000_000, 100_000, 200_000]


def test_render_section_and_replace_section() -> None:
    section = soak.render_section([_result(rss_after=1100)], "python -m bench.soak",
                                  {"date": "today"})
    assert section.startswith("## Soak\n") and "- Command: `python -m bench.soak`" in section
    assert "| h1 keep-alive | h2load --h1 -c100, GET /hello | 100 / 100 requests | 2.5 |" \
        in section and "FAIL: RSS changed +10.0%" in section
    document = "# Benchmarks\n\n## Results\n\nr\n"
    added = soak.replace_section(document, section)
    assert added == document + "\n" + section
    replaced = soak.replace_section(added + "## Later\n\nl\n", "## Soak\n\nnew\n")
    assert replaced == document + "\n## Soak\n\nnew\n\n## Later\n\nl\n"
    assert soak.replace_section(added, "## Soak\n\nnew\n") == document + "\n## Soak\n\nnew\n"
    assert soak.replace_section("", section) == section
    assert soak.section_of(replaced) == "## Soak\n\nnew\n"
    assert soak.section_of(added) == section and soak.section_of(document) is None
    # bench.run rewrites the file and puts the kept section back: at the end of its report.
    assert soak.replace_section(document, soak.section_of(added) or "") == added
