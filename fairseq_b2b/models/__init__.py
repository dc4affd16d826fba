from . import bert, gpt  # noqa: F401  (registers the b2b_bert and b2b_gpt archs)
