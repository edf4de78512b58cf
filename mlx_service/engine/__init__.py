"""Between a parsed request and the models, as text-embeddings-inference's `core` crate: the
inference façade, admission, the one inference thread and its queue.

- `inference`: the façade the HTTP layer calls (status, admit, tokenize, submit, wait);
- `scoring`: rerank and predict requests on the same façade;
- `admission`: request slots and tokens in flight, 429 beyond them;
- `worker`: the inference thread, its queue and its batches; `cycle_policy` says which queued
  requests one cycle takes;
- `model_runner`: the runner the thread holds (`embed`, `score`: TEI's `Model`).
"""
