"""The reference for `make bench-serve`: the same model folder behind FastAPI +
uvicorn (uvloop, httptools) + a transformers `pipeline("text-classification")`
(or, for a token-classification folder, `pipeline("token-classification",
aggregation_strategy="simple")`), as a team would deploy it today. Same request
and answer shape as kiln's `POST /v1/predict` for one text.
Run in .venv-ref:  .venv-ref/bin/python scripts/bench/bench_serve_reference.py MODEL_DIR PORT [threads]
"""
import json
import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

folder, port = sys.argv[1], int(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
torch.set_num_threads(threads)
architectures = json.loads((Path(folder) / "config.json").read_text()).get("architectures", [])
tags_words = any(name.endswith("ForTokenClassification") for name in architectures)
if tags_words:
    tagger = pipeline("token-classification", model=folder, device=device, aggregation_strategy="simple")
else:
    classifier = pipeline("text-classification", model=folder, device=device, truncation=True, max_length=64)
app = FastAPI()


class PredictRequest(BaseModel):
    text: str


@app.get("/readyz")
def readyz():
    return {"status": "ready"}


# A plain `def`: FastAPI runs it on its thread pool, so the event loop keeps accepting.
@app.post("/v1/predict")
def predict(request: PredictRequest):
    if tags_words:
        entities = [{**entity, "score": float(entity["score"])} for entity in tagger(request.text)]
        return {"entities": entities}
    result = classifier(request.text)[0]
    return {"label": result["label"], "score": result["score"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")
