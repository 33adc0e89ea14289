"""Text as ids and metrics see it, in any script (no pytest, no llama-index here).

Words are runs of Unicode letters, marks and digits, after NFKC normalisation (full-width
forms become plain ones) and case folding, so "Porfirio Díaz" keeps its "í". Scripts
written without spaces between words (Chinese, Japanese kana and kanji) have no word
boundaries to find, so for the token metrics every such character is a token of its
own: character-level matching, as the multilingual reading-comprehension benchmarks
(MLQA, JSQuAD) score those languages. Korean is written with spaces and keeps its words.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import regex

WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Bopomofo}"
TOKEN = regex.compile(rf"[{_CJK}]|[\p{{L}}\p{{M}}\p{{N}}--{_CJK}]+", regex.V1)
"""One character of a script without spaces, or a run of any other letters and digits."""
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")
_ARTICLES = regex.compile(r"\b(?:a|an|the)\b")


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
    """The tokens the token metrics (F1, ROUGE-L, context recall) compare: words, and each
    character of Chinese and Japanese text."""
    return list(_tokens(text))


def plain(text: str) -> str:
    """For exact match: folded, punctuation and symbols removed, runs of space made one,
    no space around."""
    return " ".join(_PUNCTUATION.sub("", fold(text)).split())


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
