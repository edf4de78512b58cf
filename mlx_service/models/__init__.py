"""The model layer, laid out as text-embeddings-inference's candle backend
(`backends/candle/src/models/`): reading a folder apart from running it, pooling and prompts
apart, one module per architecture where ours runs instead of mlx-embeddings'.

- `folder`: the model folder without MLX (ModelSpec, refusals, `folder_problems`), with
  `architectures` (what is served, and how), `weights` (safetensors headers),
  `tokenizer_files` (special tokens against the config), `pooling` and `prompts`;
- `loading`: weights into MLX modules (lenient on unused heads, quantized, float32 on a CPU);
- `modernbert`: our ModernBERT encoder;
- `embedder`: the runner the inference thread drives (tokenize, forward, pool), with
  `truncation` (tokenizing bounded by max_seq_length) and `batch_plan` (rows into passes and
  lanes, which the engine's worker uses too);
- the CPU fast passes, each beside its architecture: `fast_forward` picks one, `fast_bert`
  (BERT, XLM-R, DistilBERT; the element-wise kernels and lanes the others share),
  `fast_mpnet`, `fast_modernbert`, `fast_gemma3`, `fast_qwen3`;
- rerankers (sentence-transformers CrossEncoder folders): `roles` (embedding or scorer
  folder), `scorer_folder` (ScorerSpec, refusals), `chat_template` and `pair_tokens` (pairs
  into ids), `heads` (classifier / LogitScore heads) and `scorer` (the Scorer runner).
"""
