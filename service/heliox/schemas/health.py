"""Bodies of the probes and the service info, as the OpenAPI document describes them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok"]
    database: Literal["connected"]
    message: str


class ServiceInfo(BaseModel):
    name: Literal["heliox"]
    version: str
    environment: Literal["development", "staging", "production"]  # Settings.env's values
