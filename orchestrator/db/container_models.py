"""Tables of containers: where code_interpreter runs for the Responses API (sharing `models`' metadata;
db/schema.py has them all).

    containers ── container_files ──▶ files (the bytes, in the files wing)

A container is the sandbox session its id names, made by `POST /containers` or by a response whose
code_interpreter tool asks for `{"type": "auto"}`. It expires `expires_minutes` after its last activity
(an execution, a file added); the sweep deletes it then. Its files are files of the files wing: the ones
a client put in (an upload, or a file it names: shared, so deleting that file removes it from the
container too) and the ones its code wrote. A file the container made (`owned`) goes with it.
"""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db.models import Base, closed_set


class FileSource(enum.StrEnum):
    USER = "user"  # a client put it in
    ASSISTANT = "assistant"  # the container's code wrote it


class Container(Base):
    __tablename__ = "containers"
    __table_args__ = (
        Index("ix_containers_page", "tenant_id", "created_us", "id"),
        Index("ix_containers_expiry", "expires_at"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    last_active_at: Mapped[int] = mapped_column(BigInteger)
    expires_minutes: Mapped[int] = mapped_column(Integer)
    # last_active_at + expires_minutes, kept with it so the sweep finds expired containers by index.
    expires_at: Mapped[int] = mapped_column(BigInteger)
    memory_limit: Mapped[str | None] = mapped_column(String(8))
    # The response whose `{"type": "auto"}` tool made it (that response's code runs here).
    response_id: Mapped[str | None] = mapped_column(String(64), index=True)


class ContainerFile(Base):
    __tablename__ = "container_files"
    __table_args__ = (
        UniqueConstraint("container_id", "path", name="uq_container_files_path"),
        Index("ix_container_files_page", "container_id", "created_us", "id"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_id: Mapped[str] = mapped_column(ForeignKey("containers.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)  # the file's (files never change)
    source: Mapped[FileSource] = closed_set(FileSource, "container_file_source")
    owned: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
