from . import bert, gpt, llama  # noqa: F401  (registers the b2b_bert, b2b_gpt and b2b_llama archs)
