"""evar applications: heart- and respiratory-sound evaluations with patient-level rules and challenge metrics
(EVAR's app/: CirCor, BMD-HS, ICBHI 2017 and SPRSound), each a thin layer over evar's embedding path, result rows
and head building blocks.

- `app.metrics`: the patient-level rules and challenge metrics (pure functions).
- `app.layout`: what the builders share (clips, patient-level splits, evar task files).
- `app.heads`: the class-weighted heads over clip or frame embeddings.
- `app.runner`: embed with evar, train and select per seed, score the test split once, write the result rows.
- `app.circor`, `app.bmdhs`, `app.icbhi_sprs`: one folder per application (`python -m app.<name> build|run`).
"""
