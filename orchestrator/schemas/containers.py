"""Request bodies and queries of the Containers API (`client.containers.*`, `client.containers.files.*`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from orchestrator.schemas.common import Strict
from orchestrator.schemas.pagination import ListQuery

# How long a container lives after its last activity: hosted containers default to 20 minutes.
DEFAULT_MINUTES = 20
MAX_MINUTES = 1440
MAX_FILE_IDS = 50
MemoryLimit = Literal["1g", "4g", "16g", "64g"]


class ContainerExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    minutes: Annotated[int, Field(ge=1, le=MAX_MINUTES)]


class NoNetwork(Strict):
    """The sandbox has no network: `disabled` is the one policy it can keep."""

    type: Literal["disabled"]


class CreateContainer(Strict):
    name: Annotated[str, Field(max_length=256)]
    expires_after: ContainerExpiresAfter | None = None
    file_ids: Annotated[list[str], Field(max_length=MAX_FILE_IDS)] | None = None
    memory_limit: MemoryLimit | None = None
    network_policy: NoNetwork | None = None


class ContainerListQuery(ListQuery):
    name: str | None = None


class AddContainerFile(Strict):
    """The JSON form of `containers.files.create`: a file of the files wing, by id (the upload form is
    multipart)."""

    file_id: str
