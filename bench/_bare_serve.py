"""The reference of bench/serve.py: a bare FastAPI endpoint calling the same program and LM directly.

Usage: python _bare_serve.py PORT  (OPENAI_BASE_URL points at the fake LM server)
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

import elixirml as em

em.configure(lm=em.LM("openai/fake"), cache=False)
program = em.Predict("question -> answer")
app = FastAPI()


@app.post("/run")
async def run(body: dict[str, Any]) -> dict[str, Any]:
    prediction = await program.acall(question=body["question"])
    return {"outputs": {"answer": prediction.answer}}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
