"""What can go wrong with an archive: fatal errors and the problems a still-readable archive reports."""

from __future__ import annotations

from dataclasses import dataclass


class ArchiveError(Exception):
    """The input cannot be read (not an archive, truncated, over a cap, malformed).

    The message is one line meant for the user; front ends print it as ``tsinspect: error: ...``.
    """

    def __init__(self, message: str, member: str | None = None):
        self.member = member
        super().__init__(f"{member}: {message}" if member else message)


@dataclass(frozen=True)
class Problem:
    """Something wrong with an archive that did not stop it from being read.

    ``kind`` is a stable identifier (documented in docs/cli.md), ``member`` the record it concerns
    (``None`` for the whole file), ``detail`` one human sentence.
    """

    kind: str
    member: str | None
    detail: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "member": self.member, "detail": self.detail}

    def __str__(self) -> str:
        where = f"{self.member}: " if self.member else ""
        return f"{self.kind}: {where}{self.detail}"
