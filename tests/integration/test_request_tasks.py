"""Each request's app runs in an asyncio.Task of its own (ServerState.start_task), as under uvicorn:
current_task() is a real Task (anyio and Starlette need it), one per request even on one
keep-alive connection, with a context of its own; a task factory the app installs is used."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
from typing import Any

import httpx
import pytest

from roadrunner.server_state import REQUEST_TASK_NAME
from tests.helpers import run_server

seen_in_request: contextvars.ContextVar[str] = contextvars.ContextVar("seen_in_request", default="unset")
# Kept alive, so that no two of them share an id().
SEEN_TASKS: list[asyncio.Task[Any]] = []


async def task_reporting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if scope.get("state") is not None and "factory" in scope["state"]:
                    asyncio.get_running_loop().set_task_factory(scope["state"]["factory"])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    task = asyncio.current_task()
    assert isinstance(task, asyncio.Task)
    SEEN_TASKS.append(task)
    before = seen_in_request.get()
    seen_in_request.set(scope["path"])  # must not reach the connection's next request
    body = f"{id(task)} {task.get_name()} {getattr(task, 'made_by_factory', False)} {before}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})


def test_each_request_runs_in_its_own_task_with_its_own_context() -> None:
    with run_server(task_reporting_app) as running, httpx.Client(base_url=running.url) as client:
        answers = [client.get(f"/request-{i}").text.split() for i in range(3)]  # one connection
    task_ids = {answer[0] for answer in answers}
    assert len(task_ids) == 3
    for _, name, by_factory, before in answers:
        assert before == "unset"
        assert by_factory == "False"
        if REQUEST_TASK_NAME is None:  # 3.12+: asyncio's own lazily formatted "Task-<n>"
            assert name.startswith("Task-")
        else:
            assert name == REQUEST_TASK_NAME


def test_request_tasks_come_from_the_task_factory_the_app_installs() -> None:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        task.made_by_factory = True  # type: ignore[attr-defined]
        return task

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            scope["state"]["factory"] = factory
        await task_reporting_app(scope, receive, send)

    with run_server(app, lifespan="on") as running, httpx.Client(base_url=running.url) as client:
        answers = [client.get("/").text.split() for _ in range(2)]
    assert [answer[2] for answer in answers] == ["True", "True"]
    assert answers[0][0] != answers[1][0]


def uvloop_breaks_the_eager_factory() -> bool:
    """On 3.13, uvloop 0.23's create_task passes `eager_start` to the task factory, which the
    eager_task_factory of some 3.13 releases (3.13.0) does not take: under uvloop every task it
    would make fails, under uvicorn as well. Not roadrunner's to fix."""
    if sys.version_info < (3, 13):
        return False
    parameters = inspect.signature(asyncio.eager_task_factory).parameters  # type: ignore[attr-defined]
    return "eager_start" not in parameters and all(p.kind is not p.VAR_KEYWORD for p in parameters.values())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_eager_task_factory_serves_requests(loop: str) -> None:
    """An eager task runs the app inside start_task, so inside the parser's callback: the
    connection must serve it as it serves a task started on the next loop pass."""
    if loop == "uvloop" and uvloop_breaks_the_eager_factory():
        pytest.skip("uvloop passes eager_start, which this Python's eager_task_factory does not take")
    if loop == "asyncio":
        asyncio.set_event_loop_policy(None)  # an earlier test in this process may have set uvloop's

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            scope["state"]["factory"] = asyncio.eager_task_factory  # type: ignore[attr-defined]
        await task_reporting_app(scope, receive, send)

    with run_server(app, lifespan="on", loop=loop) as running, httpx.Client(base_url=running.url) as client:
        answers = [client.get(f"/eager-{i}").text.split() for i in range(3)]
        # Each ran to its end inside start_task: none may stay registered (shutdown would wait
        # on it for the graceful timeout, --limit-concurrency would count it).
        assert running.server.server_state.tasks == set()
    assert len({answer[0] for answer in answers}) == 3
    assert {answer[3] for answer in answers} == {"unset"}
