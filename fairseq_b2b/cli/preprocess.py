"""``b2b-preprocess``: the data pipeline's subcommands (fairseq_b2b/data/pipeline.py) plus ``hf``,
which tokenizes with an imported model's HuggingFace tokenizer (fairseq_b2b/hf/corpus_tokens.py).
The two meet here, above both, so that the data pipeline never imports the HF code."""
from __future__ import annotations

from ..data import pipeline
from ..hf import corpus_tokens

EXTRA_COMMANDS = {"hf": (corpus_tokens.add_parser, corpus_tokens.run)}


def build_parser():
    return pipeline.build_parser(EXTRA_COMMANDS)


def main(argv=None) -> None:
    pipeline.main(argv, EXTRA_COMMANDS)


if __name__ == "__main__":
    main()
