"""A FastAPI app used to compare roadrunner with uvicorn."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> Item:
    return item


@app.get("/missing")
async def missing() -> None:
    raise HTTPException(status_code=404, detail="nope")


@app.head("/head")
@app.get("/head")
async def head() -> dict[str, str]:
    return {"ok": "yes"}
