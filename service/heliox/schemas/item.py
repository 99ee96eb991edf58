"""Request and response bodies for /api/v1/items."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL (U+0000): refuse it here, as a 422, not a 500 from the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
Description = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_nul)]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None


class ItemUpdate(BaseModel):
    """Partial update: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        # Omit the field to keep the name; an explicit null is a mistake.
        if value is None:
            raise ValueError("name cannot be null")
        return value


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    offset: int = Field(ge=0)
    limit: int = Field(ge=1)
