"""HuggingFace interop: ``b2b-import-hf`` (HF BERT / GPT-2 / LLaMA, or a LLaMA GGUF file ->
fairseq ``b2b_`` checkpoint + dict.txt) and ``b2b-export-hf`` (the reverse).

``transformers`` / ``safetensors`` are the optional ``[hf]`` extra (``pip install ".[hf]"``
in the project folder), ``gguf`` the ``[gguf]`` extra: nothing in this package imports them at
import time.
"""
from .common import VocabMapping, require_transformers  # noqa: F401
