"""``python -m fairseq_b2b.data`` is ``b2b-preprocess``."""
from .pipeline import main

main()
