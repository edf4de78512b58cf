"""The reranking routes, in the shapes people call (DESIGN.md, "Reranking"), on one scorer:

- TEI `POST /rerank` {query, texts, raw_scores, return_text, truncate} -> [{index, score,
  text?}], best first;
- Cohere v1 / Jina `POST /v1/rerank` {model, query, documents, top_n, return_documents} ->
  {id, model, results[{index, relevance_score, document?}], usage, meta};
- Cohere v2 `POST /v2/rerank` {model, query, documents, top_n, max_tokens_per_doc} ->
  {id, results[{index, relevance_score}], meta};
- TEI `POST /predict` {inputs, raw_scores} -> [{label, score}] (a list of them per input for
  a batch), softmax unless raw.

Every answer says how it ranked (`ranked_by` in the body where the shape is an object, and
the X-Ranked-By header on all): the reranker, or the embedding model's cosine similarity
when no reranker is configured. The routes only parse and answer; mlx_service/engine/scoring.py
scores, through the inference façade's admission, queue and batching.
"""
from __future__ import annotations

import uuid
from typing import Callable

from flask import Flask, g, jsonify, request

from mlx_service.engine.inference import Inference
from mlx_service.engine.scoring import Ranking, Scoring
from mlx_service.http.rerank_validation import (RerankRequest, RerankShape, parse_predict_request,
                                           parse_rerank_request)

RANKED_BY_HEADER = "X-Ranked-By"


def register_rerank_routes(app: Flask, inference: Inference, scoring: Scoring,
                           read_body: Callable[[], object], check_key: Callable[[], None]) -> None:
    config = inference.config

    def client_gone():
        return request.environ.get("waitress.client_disconnected")

    def ranked(shape: RerankShape) -> tuple[RerankRequest, Ranking]:
        check_key()
        ticket = inference.admit()  # a slot first, before the body is read
        try:
            req = parse_rerank_request(read_body(), shape, config.max_batch_items)
            documents = req.documents
            if req.max_tokens_per_doc is not None:
                documents = scoring.cut_documents(documents, req.max_tokens_per_doc)
            ranking = scoring.rank(ticket, req.query, documents, instruction=req.instruction,
                                   raw=req.raw_scores, truncate=req.truncate,
                                   client_gone=client_gone())
            g.note = f" pairs={len(documents)} tokens={ranking.tokens} by={ranking.ranked_by}"
            return req, ranking
        finally:
            inference.release(ticket)

    def answer(body, ranking: Ranking):
        resp = jsonify(body)
        resp.headers[RANKED_BY_HEADER] = str(ranking.ranked_by)
        return resp

    def model_name(ranking: Ranking) -> str:
        spec = inference.rerank_spec
        return spec.name if scoring.reranks() and spec is not None else inference.spec.name

    def top(req: RerankRequest, ranking: Ranking) -> list[int]:
        order = ranking.order()
        return order[:req.top_n] if req.top_n is not None else order

    def listed(req: RerankRequest, ranking: Ranking, score_key: str, document) -> list[dict]:
        """The top results, best first, in a shape's keys; `document(text)`: the fields that
        carry a document back when the request asks for them."""
        results = []
        for i in top(req, ranking):
            item = {"index": i, score_key: ranking.scores[i]}
            if req.return_documents:
                item.update(document(req.documents[i]))
            results.append(item)
        return results

    @app.post("/rerank")
    def rerank_tei():
        req, ranking = ranked(RerankShape.TEI)
        return answer(listed(req, ranking, "score", lambda text: {"text": text}), ranking)

    @app.post("/v1/rerank")
    def rerank_v1():
        req, ranking = ranked(RerankShape.COHERE_V1)
        results = listed(req, ranking, "relevance_score",
                         lambda text: {"document": {"text": text}})
        return answer({"id": str(uuid.uuid4()), "model": model_name(ranking),
                       "results": results,
                       "usage": {"total_tokens": ranking.tokens},
                       "meta": {"api_version": {"version": "1"},
                                "billed_units": {"search_units": 1}},
                       "ranked_by": ranking.ranked_by}, ranking)

    @app.post("/v2/rerank")
    def rerank_v2():
        req, ranking = ranked(RerankShape.COHERE_V2)
        results = [{"index": i, "relevance_score": ranking.scores[i]} for i in top(req, ranking)]
        return answer({"id": str(uuid.uuid4()), "results": results,
                       "meta": {"api_version": {"version": "2"},
                                "billed_units": {"search_units": 1},
                                "tokens": {"input_tokens": ranking.tokens, "output_tokens": 0}},
                       "model": model_name(ranking), "ranked_by": ranking.ranked_by}, ranking)

    @app.post("/predict")
    def predict():
        check_key()
        ticket = inference.admit()
        try:
            req = parse_predict_request(read_body(), config.max_batch_items)
            out = scoring.predict(ticket, req.items, raw=req.raw_scores, truncate=req.truncate,
                                  client_gone=client_gone())
            g.note = f" inputs={len(req.items)}"
        finally:
            inference.release(ticket)
        return jsonify(out[0] if req.single else out)
