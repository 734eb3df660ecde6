"""Evaluation modes. Each reads embeddings through `evar.embed`, rows through `evar.splits`, and writes
`evar.results.ResultRow`s with its `mode`:

- `linear`: frozen-embedding heads (linear probe, logreg: mode `linear`; weighted kNN: mode `knn`).
"""
