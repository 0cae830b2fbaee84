"""Register Prefect's block types once, from the one-shot migrate service.

Every API replica registers them at start-up; replicas started together on a
fresh database race on the insert (`uq_block_type__slug`) and the loser exits.
Compose starts all replicas of a service at once, so the migrate job registers
them first and the replicas then only find them present.

  python -m prefectstack.compose.register_blocks
"""

from __future__ import annotations

import asyncio

# Imported before the event loop starts: importing prefect runs its plugins'
# start-up hooks with anyio.run, which fails inside a running loop.
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration


async def register() -> None:
    # As the server's own start-up does: the registration manages its transactions.
    session = await provide_database_interface().session()
    async with session:
        await run_block_auto_registration(session=session)


if __name__ == "__main__":
    asyncio.run(register())
    print("block types registered")
