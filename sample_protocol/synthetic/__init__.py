"""A synthetic economy shaped like Kazakhstan's, for tests, demos and benchmarks.

Business entities (about 2 in 3 individual entrepreneurs) with valid BINs and IINs,
latent risk drivers, one table per para 24 source (plus CUSTOMS) in the catalogue's
contract, and for each of the four indexes the outcome over 12 months and its true
probability, kept apart in the ``truth`` table. numpy and pyarrow only, so every party
can use it. See ``docs/synthetic.md`` for the generative story.
"""

from .economy import (
    GENERATOR_VERSION,
    MAX_ENTITIES,
    OUTCOMES_FILE,
    TRUTH_FILE,
    Economy,
    EconomySummary,
    check_output_dir,
    generate_economy,
    load_economy,
    read_summary,
    write_economy,
)
from .outcomes import INDEX_IDS, roc_auc
from .population import AS_OF

__all__ = [
    "AS_OF",
    "GENERATOR_VERSION",
    "INDEX_IDS",
    "MAX_ENTITIES",
    "OUTCOMES_FILE",
    "TRUTH_FILE",
    "Economy",
    "EconomySummary",
    "check_output_dir",
    "generate_economy",
    "load_economy",
    "read_summary",
    "roc_auc",
    "write_economy",
]
