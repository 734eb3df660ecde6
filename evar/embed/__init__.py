"""Embedding: the only path from audio to cached clip embeddings [N, D] and frame embeddings.

- `source.TaskEmbeddings`: a task's embeddings for a model config, from the cache or computed.
- `extract.extract_embeddings`: decoding, batching and inference (no cache).
- `cache.EmbeddingCache`, `cache.cache_key`, `cache.weight_hash`: the content-addressed cache.

Submodules are imported where they are used, so importing `evar.embed` costs nothing.
"""
