"""Text as ids and metrics see it, in any script (no pytest, no llama-index here).

Words are runs of Unicode letters, marks and digits, after NFKC normalisation (full-width
forms become plain ones) and case folding, so "Porfirio Díaz" keeps its "í". Scripts
written without spaces between words (Chinese, Japanese kana and kanji) have no word
boundaries to find, so for the token metrics every such character is a token of its
own: character-level matching, as the multilingual reading-comprehension benchmarks
(MLQA, JSQuAD) score those languages. Korean is written with spaces and keeps its words.
"""

from __future__ import annotations

import reprlib
import unicodedata
from functools import lru_cache

import regex

WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Bopomofo}"
TOKEN = regex.compile(rf"[{_CJK}]|[\p{{L}}\p{{M}}\p{{N}}--{_CJK}]+", regex.V1)
"""One character of a script without spaces, or a run of any other letters and digits."""
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")
_ARTICLES = regex.compile(r"\b(?:a|an|the)\b")
_UNSEEN = regex.compile(r"[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}--[\t\n]]", regex.V1)
"""Characters a reader cannot see as themselves: control characters but tab and newline
(terminal escapes), format characters (bidi overrides such as U+202E, zero-width spaces
and joiners), lone surrogates, and the line and paragraph separators."""
QUOTED = 200
"""The most characters of a value an error message quotes."""
_SURROGATE = regex.compile(r"[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """``text`` as valid Unicode, which UTF-8 can always encode: a lone surrogate (half an
    emoji, a ``"\\ud83d"`` escape in a JSON file, a file name's undecodable byte) becomes
    U+FFFD, a surrogate pair left as two characters (PyYAML's Python parser) the one it
    stands for. Text from outside (the app's answers and contexts, the judge's feedback,
    questions) passes through here once, where it enters."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def fold(text: str) -> str:
    """NFKC-normalised and case-folded: how every comparison here sees text."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The words of ``text`` (folded), in any script; punctuation and spaces separate them."""
    found: list[str] = WORD.findall(fold(text))
    return found


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK) characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def slug(text: str, limit: int = 60) -> str:
    """A readable id from a query: its words joined by dashes, at most ``limit`` columns.

    "¿Quién fue Porfirio Díaz?" -> ``quién-fue-porfirio-díaz``; a Chinese query, one run
    of characters, is cut to the limit. Empty when ``text`` has no letters or digits.
    """
    parts: list[str] = []
    used = 0
    for word in words(text):
        needed = width(word) + (1 if parts else 0)  # the dash before it
        if used + needed > limit:
            if not parts:  # one long word (a sentence without spaces): cut it
                while word and width(word) > limit:
                    word = word[:-1]
                parts.append(word)
            break
        parts.append(word)
        used += needed
    return "-".join(parts)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation, for any script: folded, no punctuation or symbols,
    no English articles, single spaces."""
    text = _PUNCTUATION.sub("", fold(text))
    return " ".join(_ARTICLES.sub(" ", text).split())


@lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(TOKEN.findall(normalize_answer(text)))


def tokens(text: str) -> list[str]:
    """The tokens token F1 and context recall compare, after SQuAD's normalisation
    (:func:`normalize_answer`): words, and each character of Chinese and Japanese text."""
    return list(_tokens(text))


@lru_cache(maxsize=4096)
def _rouge_tokens(text: str) -> tuple[str, ...]:
    return tuple(TOKEN.findall(fold(text)))


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L compares, as Google's ``rouge-score`` makes them without a
    stemmer: folded, every run of letters and digits a token, anything else a break
    (articles stay, "x-ray" is two tokens). Unlike ``rouge-score``, letters and digits
    of any script count (it keeps only a-z and 0-9), and each character of Chinese and
    Japanese text is a token."""
    return list(_rouge_tokens(text))


def plain(text: str) -> str:
    """Folded, punctuation and symbols removed, runs of space made one, no space around
    (articles kept: exact match uses :func:`normalize_answer`)."""
    return " ".join(_PUNCTUATION.sub("", fold(text)).split())


def printable(text: str) -> str:
    """``text`` as a user should read it on a terminal or in a test id: every character
    that would not show as itself (a control character, a bidi override that reorders
    what follows, a zero-width character) written as its Python escape, ``\\u202e``.
    Tabs and newlines are kept."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSEEN.sub(lambda found: ascii(found.group())[1:-1], text)


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxstring = QUOTED
_SHORT.maxother = QUOTED
for _limit in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_SHORT, _limit, 8)


def quoted(value: object, limit: int = QUOTED) -> str:
    """``repr(value)`` for an error message, in at most about ``limit`` characters
    whatever the value (a YAML alias can make a value of gigabytes): long strings and
    containers are cut with ``...`` before they are written out in full."""
    text = printable(_SHORT.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


TEXT_LIMIT = 2000
"""Characters kept of each response and context (in the JSON report, with
``rag_report_text = truncate``) and of each judge's feedback (everywhere: every report
and the verdict cache)."""
_CLIPPED = regex.compile(r" \[\.\.\. \d+ more characters\]")


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    """``text`` cut to its first ``limit`` characters, saying how many more there were.
    A text clipped already is left as it is (a cached verdict reads the same again)."""
    if text is None or len(text) <= limit or _CLIPPED.fullmatch(text, limit):
        return text
    return f"{text[:limit]} [... {len(text) - limit} more characters]"
