"""The compiled connections stay collectable by the cyclic GC.

mypyc gives an attribute that a compiled subclass annotates again (`self.transport: T = ...`)
when a compiled base already declares it a second visit in the type's tp_traverse. The GC then
subtracts that reference twice, takes the objects on such a cycle for reachable from outside,
and never frees them: an Http2Connection in a cycle with its transport leaked (make fuzz ran out
of memory on the http2 harness). A real transport drops its protocol when the connection is
lost, so a server did not leak; any cycle through such an attribute would have.
"""

from __future__ import annotations

import ast
import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from roadrunner.compiled import MODULES, source_path
from roadrunner.config import Config
from roadrunner.protocols.http1.h11_parser import H11Connection
from roadrunner.protocols.http1.httptools_parser import HttpToolsConnection
from roadrunner.protocols.http2.connection import Http2Connection
from roadrunner.server_state import ServerState
from tests.helpers import HTTP2_ENGINES


def annotated_attributes(node: ast.ClassDef) -> set[str]:
    """Names a class annotates: in its body, or as `self.name: T` in its methods."""
    names = set()
    for item in ast.walk(node):
        if isinstance(item, ast.AnnAssign):
            target = item.target
            if isinstance(target, ast.Name) and item in node.body:
                names.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                    and target.value.id == "self":
                names.add(target.attr)
    return names


def re_annotations(sources: dict[str, str]) -> Iterator[str]:
    """`module.Class: names` for each class that annotates again what a base class among these
    sources annotates."""
    classes: dict[str, tuple[str, list[str], set[str]]] = {}
    for module, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
                classes[node.name] = (module, bases, annotated_attributes(node))

    def ancestors(name: str) -> Iterator[str]:
        for base in classes[name][1]:
            if base in classes:
                yield base
                yield from ancestors(base)

    for name, (module, _, names) in classes.items():
        for ancestor in ancestors(name):
            again = names & classes[ancestor][2]
            if again:
                yield f"{module}.{name}: {sorted(again)} (declared by {ancestor})"


def test_no_compiled_class_annotates_again_what_its_base_declares() -> None:
    sources = {}
    for module in MODULES:
        with open(source_path(module)) as file:
            sources[module] = file.read()
    assert list(re_annotations(sources)) == []


def test_the_scan_finds_an_attribute_annotated_again() -> None:
    base = "class Base:\n    transport: object\n"
    sub = "class Sub(Base):\n    def __init__(self) -> None:\n        self.transport: object = None\n"
    assert list(re_annotations({"a": base, "b": sub})) == ["b.Sub: ['transport'] (declared by Base)"]
    plain = "class Sub(Base):\n    def __init__(self) -> None:\n        self.transport = None\n"
    assert list(re_annotations({"a": base, "b": plain})) == []


class BackReference:
    """Stands in for a transport that still holds its protocol."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol


async def no_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize("engine", HTTP2_ENGINES)
@pytest.mark.parametrize("kind", [HttpToolsConnection, H11Connection, Http2Connection])
@pytest.mark.parametrize("attribute", ["transport", "streams_or_state"])
def test_a_connection_on_a_reference_cycle_is_collected(kind: type, engine: str, attribute: str) -> None:
    if kind is not Http2Connection and engine == "nghttp2":
        pytest.skip("the HTTP/2 engine concerns HTTP/2 connections only")
    loop = asyncio.new_event_loop()
    try:
        config = Config(no_app, http2=True, http2_engine=engine)
        gc.collect()
        before = sum(1 for obj in gc.get_objects() if type(obj) is kind)
        connection = kind(config, ServerState(), {}, loop)
        if attribute == "transport":
            connection.transport = BackReference(connection)
        elif kind is Http2Connection:
            connection.streams[1] = BackReference(connection)
        else:
            connection.state.connections.add(connection)
        del connection
        gc.collect()
        assert sum(1 for obj in gc.get_objects() if type(obj) is kind) == before
    finally:
        loop.close()
