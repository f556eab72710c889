"""One compaction at a time in a cluster: a lock in Redis with a TTL, renewed while it runs.

The collector's background jobs (bin-packing today, compacting closed days) and `trail compact`
given a Redis URL take `trail:lock:maintenance` (SET NX PX with a random token) and renew it every
third of its TTL while they work; a holder that dies loses it when the TTL runs out. The store's
own file lock (one compaction per data dir on one machine) stays underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from trailcli.errors import TrailError

LOCK_KEY = "trail:lock:maintenance"
LOCK_TTL_MS = 30_000

# KEYS: the lock. ARGV: the holder's token, the TTL in ms. 1 while held by this token.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.asynccontextmanager
async def held(client: Any, ttl_ms: int = LOCK_TTL_MS) -> AsyncIterator[bool]:
    """Yield True with the lock held (and renewed) until the block ends, False when another
    node holds it (the block should then skip its work)."""
    token = secrets.token_hex(16)
    if not await client.set(LOCK_KEY, token, nx=True, px=ttl_ms):
        yield False
        return
    renew = client.register_script(RENEW)

    async def keep() -> None:
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            with contextlib.suppress(Exception):  # Redis away: the TTL decides, as for a crash
                await renew(keys=[LOCK_KEY], args=[token, ttl_ms])

    task = asyncio.create_task(keep())
    try:
        yield True
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await client.register_script(RELEASE)(keys=[LOCK_KEY], args=[token])


@contextlib.contextmanager
def held_sync(url: str, ttl_ms: int = LOCK_TTL_MS) -> Iterator[None]:
    """`trail compact --redis URL`: the same lock, taken or refused (TrailError), renewed from a
    thread while the compaction runs."""
    import redis
    from redis.exceptions import RedisError

    from trailcli.collector.redis_link import redacted_url

    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=4.0)
    token = secrets.token_hex(16)
    try:
        got = client.set(LOCK_KEY, token, nx=True, px=ttl_ms)
    except (RedisError, OSError) as exc:
        raise TrailError(
            f"Cannot reach Redis at {redacted_url(url)}: {exc}.",
            "start Redis there, or fix --redis / $TRAIL_REDIS_URL",
        ) from None
    if not got:
        client.close()
        raise TrailError(
            "A node of the cluster is compacting the tables now.",
            "wait for it to finish; compaction is safe to run again afterwards",
        )
    stop = threading.Event()
    renew = client.register_script(RENEW)

    def keep() -> None:
        while not stop.wait(ttl_ms / 3000):
            with contextlib.suppress(RedisError, OSError):
                renew(keys=[LOCK_KEY], args=[token, ttl_ms])

    thread = threading.Thread(target=keep, name="compact-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(RedisError, OSError):
            client.register_script(RELEASE)(keys=[LOCK_KEY], args=[token])
        client.close()
