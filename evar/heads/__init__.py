"""The head registry: a head's name on the command line (`--head`) -> its class, imported when first used.

Heads are small estimators over frozen clip embeddings (see `evar.heads.base`): `probe` (EVAR's protocol: a linear
layer or MLP trained by Adam with early stopping on validation), `logreg` (L2 logistic regression, strength chosen
on validation), `knn` (X-ARES's weighted kNN over cosine similarity), `mlp_search` (learning rate x hidden layers grid of probes,
the linear probe included, chosen on validation). A new head is one module here and one line in
`HEADS`.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from ..errors import EvarError, did_you_mean

HEADS = MappingProxyType({
    'probe': 'evar.heads.probe:ProbeHead',
    'logreg': 'evar.heads.logreg:LogisticRegressionHead',
    'knn': 'evar.heads.knn:KNNHead',
    'mlp_search': 'evar.heads.mlp_search:MLPSearchHead',
})


def list_heads() -> list:
    """The registered head names, sorted."""
    return sorted(HEADS)


def head_class(name: str) -> type:
    """The class registered as `name`.

    Raises:
        EvarError: an unknown name, listing the registered ones.
    """
    if name not in HEADS:
        raise EvarError(f'Unknown head {name!r}.{did_you_mean(name, HEADS)} '
                        f'Registered heads: {", ".join(list_heads())}.')
    module_name, _, class_name = HEADS[name].partition(':')
    return getattr(importlib.import_module(module_name), class_name)
