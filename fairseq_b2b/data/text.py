"""Plain-text helpers shared by the corpora: decoding, sentence splitting, document files.

The corpus format the pipeline expects: one sentence (or verse line) per line, documents
separated by one blank line, no blank line inside a document.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator, List

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by space and a capital,
# a digit, or an opening quote/bracket.
_SENTENCE_END = re.compile(r"""(?<=[.!?])(?:["')\]]*)\s+(?=["'(\[]?[A-Z0-9])""")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st sr jr prof gen col capt lt sgt rev hon gov sen rep vs etc ie eg viz cf "
    "no vol pp ch fig jan feb mar apr jun jul aug sep sept oct nov dec inc ltd co corp".split()
)


def decode(data: bytes) -> str:
    """UTF-8 (a BOM dropped), falling back to Latin-1 for old 8-bit texts; newlines as \\n."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_sentences(text: str) -> List[str]:
    """Split one paragraph (already on one line) into sentences; abbreviations are kept whole."""
    pieces: List[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start:m.start()].rstrip("\"')]")
        last_word = before.rsplit(None, 1)[-1] if before.split() else ""
        if _is_abbreviation(last_word):
            continue
        pieces.append(text[start:m.start() + len(m.group(0).rstrip())].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _is_abbreviation(word: str) -> bool:
    """'Mr.', 'e.g.', single initials ('J.') and the like do not end a sentence."""
    core = word.rstrip(".").lstrip("\"'([")
    if len(core) == 1 and core.isalpha() and core != "I":
        return True
    return core.lower().replace(".", "") in _ABBREVIATIONS


def paragraphs(lines: Iterable[str]) -> Iterator[List[str]]:
    """Group stripped lines into paragraphs at blank lines."""
    block: List[str] = []
    for line in lines:
        line = line.strip()
        if line:
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def unwrap(block: List[str]) -> List[str]:
    """Join hard-wrapped prose: a line starting in lower case continues the previous one."""
    out: List[str] = []
    for line in block:
        if out and line[:1].islower():
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    return out


def to_sentence_lines(block: List[str], max_words: int = 0) -> List[str]:
    """A paragraph as sentence-or-line per line: unwrap prose, split at sentence ends, and
    (if ``max_words``) split longer sentences at clause punctuation."""
    lines: List[str] = []
    for line in unwrap(block):
        for sentence in split_sentences(" ".join(line.split())):
            lines.extend(limit_words(sentence, max_words) if max_words else [sentence])
    return lines


def limit_words(sentence: str, max_words: int) -> List[str]:
    """Split a long sentence in two, recursively, until no piece has more than ``max_words``
    words: after a ';' or ':' near the middle if any, else a ',', else at the middle."""
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    middle = len(words) / 2
    lo, hi = len(words) // 4, len(words) - len(words) // 4
    cut = len(words) // 2
    for marks in (";:", ","):
        ends = [i + 1 for i in range(lo, hi) if words[i][-1] in marks]
        if ends:
            cut = min(ends, key=lambda e: (abs(e - middle), e))
            break
    return limit_words(" ".join(words[:cut]), max_words) + limit_words(" ".join(words[cut:]), max_words)


def write_documents(docs: Iterable[List[str]], out) -> int:
    """Write documents (lists of lines) to an open text file, a blank line between them."""
    n = 0
    for doc in docs:
        if not doc:
            continue
        if n:
            out.write("\n")
        out.write("\n".join(doc) + "\n")
        n += 1
    return n
