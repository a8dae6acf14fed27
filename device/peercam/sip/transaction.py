"""The non-INVITE client transaction (RFC 3261 §17.1.2): send a request, resend it
over UDP until answered, and return its final response."""

from __future__ import annotations

import asyncio
import secrets

from peercam.sip.message import Request, Response, Via
from peercam.sip.transport import Endpoint, Target

T1, T2 = 0.5, 4.0  # §17.1.2.2's timers; Timer F is 64 * T1


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)  # §8.1.1.7's magic cookie first


async def request(
    endpoint: Endpoint, message: Request, target: Target, t1: float = T1, branch: str = ""
) -> Response:
    """`message` with a fresh top Via (and rport, RFC 3581) on `branch` (a new one
    unless given: a CANCEL takes its INVITE's), sent to `target`; its final response.
    TimeoutError after 64 * t1 with none (Timer F); OSError if the target cannot be
    reached at all (a TCP connection refused)."""
    final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    provisional = asyncio.Event()

    def on_response(response: Response) -> None:
        if response.status >= 200:
            if not final.done():
                final.set_result(response)
        else:
            provisional.set()

    branch = branch or new_branch()
    endpoint.wait_for(branch, message.method, on_response)
    try:
        # Connecting is inside Timer F: a registrar that swallows the SYN fails in
        # 64 T1 like one that does not answer, not in the kernel's two minutes.
        async with asyncio.timeout(64 * t1):
            await endpoint.connect(target)
            host, port = endpoint.local_address(target)
            via = Via(target.transport, host, port, (("branch", branch), ("rport", "")))
            message.headers.remove("Via")
            message.headers.add("Via", str(via))
            await endpoint.send(message, target)
            interval = t1
            while target.transport == "UDP":
                done, _ = await asyncio.wait({final}, timeout=interval)
                if done:
                    break
                # Timer E: doubling to T2, and T2 straight away once a 1xx came.
                interval = T2 if provisional.is_set() else min(2 * interval, T2)
                await endpoint.send(message, target)
            return await final
    finally:
        endpoint.stop_waiting(branch, message.method)


async def end_task(task: asyncio.Task[None] | None, finishing: bool, t1: float) -> None:
    """Stop a call's task at close; one `finishing` (the call ended, and the task is
    sending its BYE) first gets to retransmit to its end, which Timer F bounds."""
    if task is None:
        return
    if finishing and not task.done():
        await asyncio.wait({task}, timeout=64 * t1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
