"""fairseq criterions of fairseq-b2b: ``b2b_span`` (extractive QA, SQuAD)."""
from . import span  # noqa: F401  (registers the criterion)
