"""Answering one GraphQL request within its deadline and response size (docs/GATEWAY.md).

Small operations run on the event loop. Operations whose cost is at least `OFFLOAD_COST`
(long lists, introspection) run on a worker thread with its own event loop: graphql-core
completes list items synchronously, and ten thousand rows would otherwise hold the loop
(and every other client, /health included) for the whole time. Their named queries still
go through the gateway's one NATS connection, on the main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, ExecutionResult

from gateway.budget import Budget, too_large_message
from gateway.errors import DeadlineExceeded, GatewayError, ResponseTooLarge, request_error
from gateway.execution import encoder, result_payload

if TYPE_CHECKING:
    from gateway.execution import Executor, Operation, Prepared
    from gateway.graphql_http import Params
    from gateway.schema.base import Context
    from gateway.upstream import Result, Upstream

#: Operations at least this costly run off the event loop (about a millisecond of work).
OFFLOAD_COST = 1000
#: Worker threads for costly operations: one per core of a small machine. More would
#: only take the interpreter lock from the event loop more often.
WORKERS = 2


@dataclass(frozen=True, slots=True)
class Answer:
    """An encoded response, or a request error with its HTTP status."""

    body: bytes
    #: Status for application/graphql-response+json (application/json always uses 200).
    status: int = 200
    #: A complete result without errors, which may be cached.
    cacheable: bool = False


class _MainLoopUpstream:
    """The upstream as seen from a worker thread: each query runs on the main loop."""

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self._upstream = upstream
        self._loop = loop

    async def query(self, name: str, params: dict[str, Any], *, follow: bool = True) -> Result:
        future = asyncio.run_coroutine_threadsafe(
            self._upstream.query(name, params, follow=follow), self._loop
        )
        return await asyncio.wrap_future(future)


class _ThreadRun:
    """One coroutine on a worker thread's own event loop, cancellable from the main loop."""

    def __init__(self, make: Callable[[], Awaitable[Answer]]) -> None:
        self._make = make
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Answer] | None = None
        self._cancelled = False

    def run(self) -> Answer:
        loop = asyncio.new_event_loop()
        try:
            self._loop = loop
            self._task = loop.create_task(self._make())  # type: ignore[arg-type]
            if self._cancelled:
                self._task.cancel()
            return loop.run_until_complete(self._task)
        finally:
            self._loop = None
            loop.close()

    def cancel(self) -> None:
        self._cancelled = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)


class Answerer:
    """Runs HTTP GraphQL operations under the deadline and size limits of the settings."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.settings = executor.settings
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="graphql-heavy")

    def close(self) -> None:
        """Stop the worker threads (waiting operations are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def answer(
        self,
        document: DocumentNode,
        context: Context,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        cost: int,
    ) -> Answer:
        """The encoded answer, or DEADLINE_EXCEEDED / RESPONSE_TOO_LARGE."""
        timeout = self.settings.request_timeout
        try:
            if cost < OFFLOAD_COST:
                async with asyncio.timeout(timeout):
                    return await self._run(document, context, variables, operation_name)
            return await self._offload(document, context, variables, operation_name, timeout)
        except TimeoutError:
            error = DeadlineExceeded(
                f"The request took longer than {timeout:g} s (GATEWAY_REQUEST_TIMEOUT)."
            )
            return _error(error)

    async def answer_request(
        self,
        prepared: Prepared,
        operation: Operation,
        coerced: Any,
        context: Context,
        params: Params,
    ) -> Answer:
        """``answer`` of one request's operation, with its coerced variables' cost."""
        cost = self.executor.cost(operation, coerced)
        document: DocumentNode = prepared.document  # type: ignore[assignment]
        return await self.answer(document, context, params.variables, params.operation_name, cost)

    async def _offload(
        self,
        document: DocumentNode,
        context: Context,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        timeout: float,
    ) -> Answer:
        main = asyncio.get_running_loop()
        bridged = dataclasses.replace(
            context,
            upstream=_MainLoopUpstream(context.upstream, main),  # type: ignore[arg-type]
        )
        run = _ThreadRun(lambda: self._run(document, bridged, variables, operation_name))
        # The worker runs in a copy of this context: the current trace span goes along.
        future = main.run_in_executor(self._pool, contextvars.copy_context().run, run.run)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except BaseException:
            run.cancel()
            future.cancel()
            raise

    async def _run(
        self,
        document: DocumentNode,
        context: Context,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> Answer:
        limit = self.settings.max_response_bytes
        context.budget = Budget(limit)
        result = await self.executor.execute(document, context, variables, operation_name)
        refused = _refusal(result)
        if refused is not None:
            return _error(refused)
        body = encoder.encode(result_payload(result))
        if len(body) > limit:
            return _error(ResponseTooLarge(too_large_message(len(body), limit)))
        return Answer(body, 200, cacheable=not result.errors)


def _refusal(result: ExecutionResult) -> GatewayError | None:
    """A limit error raised by a resolver: it stands for the whole request."""
    for error in result.errors or ():
        if isinstance(error.original_error, ResponseTooLarge):
            return error.original_error
    return None


def _error(error: GatewayError) -> Answer:
    body = {"errors": [request_error(error.message, error.code)]}
    return Answer(encoder.encode(body), error.status)
