"""GET /v2/loras (our extension): the LoRAs of this server's LoRA folder, for clients and the
playground to pick from (docs/loras.md)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from server.api.deps import ServerDep, require_token
from server.api.openapi import FAILED_RESPONSES
from server.wire.loras import LoraListing, lora_listing

router = APIRouter(tags=["loras"], dependencies=[Depends(require_token)])


@router.get("/v2/loras", response_model=LoraListing, responses={401: FAILED_RESPONSES[401]})
async def list_loras(server: ServerDep) -> LoraListing:
    """The LoRAs `config.loras` of a dev-kontext job may name: each file's name, rank, the
    base model it claims, size, and whether it loads (and why not).

    The folder is rescanned on every call, so a file dropped in is listed (and usable) at
    once. A server without a LoRA folder answers 200 with `enabled: false`, an empty list,
    and in `problem` how to give it one.
    """
    catalog = server.engines.loras
    # Off the loop: the rescan stats every file and reads the headers of new ones.
    return await asyncio.to_thread(lora_listing, catalog)
