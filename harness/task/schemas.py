"""Pydantic output types for the JSON tasks that ship (strings bounded so guided decoding ends)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: str = Field(max_length=20)
    last_name: str = Field(max_length=20)
    age: int = Field(ge=0, le=150)
    hobby: str = Field(max_length=20)


class SnipsFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intent: Literal["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
                    "SearchCreativeWork", "SearchScreeningEvent"]
    slots: dict[Annotated[str, Field(max_length=30)], Annotated[str, Field(max_length=40)]] = Field(max_length=8)
