"""The HTTP layer, as text-embeddings-inference's `router` crate: routes, request bodies,
the server and its connections; it parses and answers, and calls the engine for the rest.

- `app`: the Flask routes, body limits, the API key, JSON errors, the per-request log line;
- `validation` and `rerank_validation`: request bodies into what to embed or score;
- `rerank_api`: the reranking routes (TEI, Cohere, Jina shapes) and /predict;
- `served_models`: what /info and GET /v1/models say is served;
- `server`: waitress around the app (limits, timeouts, JSON for waitress's own errors), on
  `connections`, the connection rules shared with the gateway and registry images.
"""
