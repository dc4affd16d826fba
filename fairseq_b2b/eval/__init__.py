"""Downstream evaluation of grown models.

- :mod:`fairseq_b2b.eval.lm` (``b2b-eval-lm``): zero-shot perplexity of a GPT checkpoint on raw
  text (PTB, WikiText-2, ...), per BPE token and per word, through fairseq's own eval-lm.
- :mod:`fairseq_b2b.eval.glue` (``b2b-glue``): GLUE data preparation with the pre-training BPE
  and dictionary, the paper's fine-tuning grid with fairseq's ``sentence_prediction`` task,
  the GLUE metrics and a results table.
- :mod:`fairseq_b2b.eval.metrics`: accuracy, F1, Matthews, Pearson, Spearman in plain numpy.
- ``squad.md``: how to evaluate SQuAD v1.1 (HuggingFace export + ``run_qa.py``).
"""
