"""Programs from the IR (placeholder until wired): returns (None, reason) so the torch-free path runs."""

from __future__ import annotations


def programs_from_ir(traced, scripted, trust: bool):
    return None, "torch-free: code/ and debug info (IR path not used)"
