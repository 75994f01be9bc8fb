"""Limits on what one `iau requests add` accepts: the input may be careless or hostile, and every refusal must
come back at once, in bounded memory (iau_core/ids.py applies them)."""

from __future__ import annotations

from pydantic import Field

from iau_core.config.base import Section
from iau_core.ids import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IDS


class RequestsParams(Section):
    """Intake of deletion requests (`iau requests add`)."""

    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, gt=0, description="largest --file read, in bytes; a "
                                "larger one is refused before it is parsed")
    max_ids_per_call: int = Field(DEFAULT_MAX_IDS, gt=0, description="most ids one call may queue (arguments and "
                                  "file lines together); more are refused, nothing is written")
