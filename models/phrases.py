"""Distress-phrase spotting on guarded transcripts: a configurable lexicon, fuzzy matching, negation.

Scoring, so downstream fusion can tell a call for help from talk about one:
- similarity: 1.0 for an exact match. Words of five letters or more may differ a little (rapidfuzz
  ratio >= 80, e.g. "ambulence"); short words must match exactly, because "hell"/"help" or
  "shop"/"stop" are different words, not spelling variants. A word split or merged by the
  recogniser ("some body help") matches on the joined letters (x0.95), and one filler word inside a
  phrase ("let me just go") is allowed (x0.9).
- negation removes a hit: a negator up to four words before it in the same clause ("I don't need
  help", "no help needed") or "not"/"isn't" just after it ("help is not needed"). Phrases that are
  themselves negative commands ("don't hurt me") are exempt from the look-back.
- prominence: a hit that is the point of its clause (the clause ends with "!", or the phrase covers at
  least a third of it; for the ambiguous one-word phrases "help", "stop", "fire" the clause may hold at
  most three words) keeps its score; a mention inside a longer clause ("the bus will stop at the
  corner", "can you help me carry these boxes") is scaled by 0.6, below `ALARM_SCORE`. Clause sizes
  count distinct words, so a repeated "help help help help" stays prominent.
- fixed expressions are not hits at all: "fire exit", "fire drill", "bus stop", "help desk", ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from rapidfuzz import fuzz

from events.catalogue import PhraseHit, Word

ALARM_SCORE: Final = 0.8
"""Hits at or above this are calls for help; below it they are mentions (prominence factor 0.6)."""
MENTION_FACTOR: Final = 0.6

DEFAULT_PHRASES: Final = (
    "help",
    "help me",
    "help us",
    "somebody help",
    "somebody help me",
    "someone help",
    "someone help me",
    "anybody help",
    "please help",
    "please help me",
    "i need help",
    "call for help",
    "call the police",
    "call 911",
    "nine one one",
    "call an ambulance",
    "get an ambulance",
    "stop",
    "please stop",
    "stop it",
    "let me go",
    "get away from me",
    "get off me",
    "get your hands off me",
    "don't hurt me",
    "don't touch me",
    "leave me alone",
    "fire",
    "i'm being attacked",
    "he's got a gun",
    "he has a gun",
    "he's got a knife",
    "i can't breathe",
    "someone is breaking in",
)
"""The issue's list plus common variants; per-stream overrides add or remove entries."""

_NON_WORD: Final = re.compile(r"[^\w']+")
_DIGIT_WORDS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CONTRACTIONS: Final = MappingProxyType(
    {
        "dont": "don't",
        "doesnt": "doesn't",
        "didnt": "didn't",
        "cant": "can't",
        "wont": "won't",
        "isnt": "isn't",
        "im": "i'm",
        "hes": "he's",
        "shes": "she's",
    }
)
_NEGATORS: Final = frozenset(
    {
        "no",
        "not",
        "never",
        "don't",
        "doesn't",
        "didn't",
        "won't",
        "wouldn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "can't",
        "cannot",
        "couldn't",
        "shouldn't",
        "nobody",
        "nothing",
        "without",
    }
)
_TRAILING_NEGATORS: Final = frozenset({"not", "isn't", "wasn't", "aren't", "never"})
_NEGATION_LOOKBACK: Final = 4
_NEGATION_LOOKAHEAD: Final = 2
_SHORT_WORD_LENGTH: Final = 4
_MIN_WORD_RATIO: Final = 80.0
_MIN_JOINED_RATIO: Final = 90.0
_JOINED_FACTOR: Final = 0.95
_FILLER_FACTOR: Final = 0.9
_ONE_WORD_MAX_CLAUSE: Final = 3
_MIN_PHRASE_COVERAGE: Final = 1 / 3
_CLAUSE_END: Final = frozenset(".!?;:,")
_FIXED_EXPRESSION_NEXT: Final = MappingProxyType(
    {
        "fire": frozenset(
            {
                "exit", "exits", "drill", "drills", "alarm", "alarms", "place", "fighter", "fighters",
                "truck", "trucks", "department", "station", "extinguisher", "escape", "door", "doors",
                "hazard", "safety", "wood", "works", "pit", "hydrant", "brigade", "service", "risk",
            }
        ),
        "stop": frozenset({"sign", "signs", "light", "lights", "by", "over", "watch"}),
        "help": frozenset({"desk", "line", "centre", "center", "page", "menu", "file", "wanted"}),
    }
)  # fmt: skip
_FIXED_EXPRESSION_PREVIOUS: Final = MappingProxyType(
    {
        "fire": frozenset({"camp", "cease"}),
        "stop": frozenset({"bus", "full", "pit", "next", "last", "first", "rest", "truck", "one"}),
        "help": frozenset({"the", "your", "his", "her", "their", "our", "self", "home"}),
    }
)


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, single spaces: the form in which texts are compared."""
    words = _NON_WORD.sub(" ", text.lower().replace("\u2019", "'")).split()
    return " ".join(stripped for word in words if (stripped := word.strip("'")))


def phrase_tokens(text: str) -> tuple[str, ...]:
    """Comparable tokens: normalised words, digits spelled out ("911" -> nine one one), common
    apostrophe-less contractions repaired ("dont" -> don't)."""
    tokens: list[str] = []
    for token in normalise_text(text).split():
        if token.isdigit():
            tokens.extend(_DIGIT_WORDS[int(digit)] for digit in token)
        else:
            tokens.append(_CONTRACTIONS.get(token, token))
    return tuple(tokens)


@dataclass(frozen=True)
class Lexicon:
    """The phrases to spot; build with `default()` and `with_overrides()`."""

    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        seen: dict[tuple[str, ...], str] = {}
        for phrase in self.phrases:
            tokens = phrase_tokens(phrase)
            if not tokens:
                raise ValueError(f"lexicon phrase {phrase!r} has no words")
            if tokens in seen:
                raise ValueError(f"lexicon phrases {seen[tokens]!r} and {phrase!r} are the same phrase")
            seen[tokens] = phrase

    @classmethod
    def default(cls) -> Lexicon:
        return cls(DEFAULT_PHRASES)

    def with_overrides(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Lexicon:
        """A copy with phrases removed (each must be present) and added (already present ones are kept once)."""
        by_tokens = {phrase_tokens(phrase): phrase for phrase in self.phrases}
        for phrase in remove:
            if by_tokens.pop(phrase_tokens(phrase), None) is None:
                raise ValueError(f"cannot remove {phrase!r}: it is not in the lexicon")
        for phrase in add:
            by_tokens.setdefault(phrase_tokens(phrase), phrase)
        return Lexicon(tuple(by_tokens.values()))


@dataclass(frozen=True)
class LexiconOverride:
    """Per-stream changes to the shared lexicon, as plain configuration data."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class StreamLexicons:
    """The lexicon each stream uses: the shared one unless the stream has overrides."""

    def __init__(self, base: Lexicon, overrides: Mapping[str, LexiconOverride]) -> None:
        self.base = base
        per_stream: dict[str, Lexicon] = {}
        for stream_id, override in overrides.items():
            try:
                per_stream[stream_id] = base.with_overrides(add=override.add, remove=override.remove)
            except ValueError as error:
                raise ValueError(f"lexicon override for stream {stream_id!r}: {error}") from error
        self._per_stream = MappingProxyType(per_stream)

    def for_stream(self, stream_id: str) -> Lexicon:
        return self._per_stream.get(stream_id, self.base)


@dataclass(frozen=True)
class _Token:
    text: str
    word_index: int
    clause: int


@dataclass(frozen=True)
class _Candidate:
    phrase: str
    first: int
    last: int
    """Token indices, inclusive."""
    score: float


class PhraseSpotter:
    """Find lexicon phrases in recognised words, scored as the module docstring explains."""

    def __init__(self, lexicon: Lexicon, min_score: float = 0.5) -> None:
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"min_score must lie in (0, 1], got {min_score}")
        self.lexicon = lexicon
        self.min_score = min_score
        self._phrases = [(phrase, phrase_tokens(phrase)) for phrase in lexicon.phrases]

    def spot(self, words: Sequence[Word]) -> tuple[PhraseHit, ...]:
        """Non-overlapping hits scoring at least `min_score`, in time order."""
        tokens, clause_sizes, exclaimed = _tokenise(words)
        candidates = [
            candidate
            for start in range(len(tokens))
            for phrase, phrase_tokens_ in self._phrases
            if (candidate := self._match_at(tokens, start, phrase, phrase_tokens_, clause_sizes, exclaimed)) is not None
        ]
        candidates.sort(key=lambda candidate: (-candidate.score, candidate.first - candidate.last, candidate.first))
        taken: set[int] = set()
        hits: list[tuple[int, PhraseHit]] = []
        for candidate in candidates:
            span = set(range(candidate.first, candidate.last + 1))
            if span & taken:
                continue
            taken |= span
            first_word = words[tokens[candidate.first].word_index]
            last_word = words[tokens[candidate.last].word_index]
            matched = words[tokens[candidate.first].word_index : tokens[candidate.last].word_index + 1]
            hits.append(
                (
                    candidate.first,
                    PhraseHit(
                        phrase=candidate.phrase,
                        matched_text=" ".join(word.text for word in matched).strip(" .,!?;:\"'"),
                        score=round(candidate.score, 3),
                        start_s=first_word.start_s,
                        end_s=last_word.end_s,
                    ),
                )
            )
        return tuple(hit for _, hit in sorted(hits, key=lambda item: item[0]))

    def _match_at(
        self,
        tokens: Sequence[_Token],
        start: int,
        phrase: str,
        wanted: tuple[str, ...],
        clause_sizes: Sequence[int],
        exclaimed: Sequence[bool],
    ) -> _Candidate | None:
        """Best match of one phrase starting at token `start`, after negation and prominence."""
        clause = tokens[start].clause
        best: tuple[float, int] | None = None  # (similarity, token count)
        for similarity, length in _window_similarities(tokens, start, wanted):
            within_clause = tokens[start + length - 1].clause == clause
            if within_clause and (best is None or similarity > best[0]):
                best = (similarity, length)
        if best is None:
            return None
        similarity, length = best
        last = start + length - 1
        if _is_fixed_expression(tokens, start, last, wanted) or _is_negated(tokens, start, last, wanted):
            return None
        if len(wanted) == 1:
            prominent = clause_sizes[clause] <= _ONE_WORD_MAX_CLAUSE
        else:
            prominent = len(set(wanted)) / clause_sizes[clause] >= _MIN_PHRASE_COVERAGE
        score = similarity * (1.0 if prominent or exclaimed[clause] else MENTION_FACTOR)
        if score < self.min_score:
            return None
        return _Candidate(phrase=phrase, first=start, last=last, score=score)


def _tokenise(words: Sequence[Word]) -> tuple[list[_Token], list[int], list[bool]]:
    """Tokens with their word and clause, plus each clause's number of distinct words (so "help help help
    help" counts as one) and whether it ends in '!'. Clauses end at punctuation."""
    tokens: list[_Token] = []
    clause_words: list[set[str]] = [set()]
    exclaimed = [False]
    for index, word in enumerate(words):
        for text in phrase_tokens(word.text):
            tokens.append(_Token(text=text, word_index=index, clause=len(clause_words) - 1))
            clause_words[-1].add(text)
        ending = word.text.rstrip("\"')]}\u201d")
        if ending and ending[-1] in _CLAUSE_END and clause_words[-1]:
            exclaimed[-1] = ending.endswith("!")
            clause_words.append(set())
            exclaimed.append(False)
    return tokens, [len(distinct) for distinct in clause_words], exclaimed


def _word_similarity(heard: str, wanted: str) -> float | None:
    if heard == wanted:
        return 1.0
    if len(wanted) <= _SHORT_WORD_LENGTH:
        return None
    ratio = fuzz.ratio(heard, wanted)
    return ratio / 100.0 if ratio >= _MIN_WORD_RATIO else None


def _aligned_similarity(heard: Sequence[str], wanted: Sequence[str]) -> float | None:
    scores = [_word_similarity(one, other) for one, other in zip(heard, wanted, strict=True)]
    if any(score is None for score in scores):
        return None
    return sum(score for score in scores if score is not None) / len(scores)


def _window_similarities(tokens: Sequence[_Token], start: int, wanted: tuple[str, ...]) -> Iterable[tuple[float, int]]:
    """(similarity, tokens consumed) for every way the phrase can match from `start`."""
    size = len(wanted)
    exact_window = [token.text for token in tokens[start : start + size]]
    if len(exact_window) == size and (similarity := _aligned_similarity(exact_window, wanted)) is not None:
        yield similarity, size
    joined_wanted = "".join(wanted)
    for length in (size - 1, size + 1):
        window = [token.text for token in tokens[start : start + length]]
        if length < 1 or len(window) != length or window[0][0] != joined_wanted[0]:
            continue
        ratio = fuzz.ratio("".join(window), joined_wanted)
        if ratio >= _MIN_JOINED_RATIO:
            yield ratio / 100.0 * _JOINED_FACTOR, length
    filler_window = [token.text for token in tokens[start : start + size + 1]]
    if size >= 2 and len(filler_window) == size + 1:
        for skipped in range(1, size):
            if filler_window[skipped] in _NEGATORS:
                continue
            rest = filler_window[:skipped] + filler_window[skipped + 1 :]
            if (similarity := _aligned_similarity(rest, wanted)) is not None:
                yield similarity * _FILLER_FACTOR, size + 1


def _is_fixed_expression(tokens: Sequence[_Token], first: int, last: int, wanted: tuple[str, ...]) -> bool:
    """One-word phrases inside set expressions ("fire exit", "bus stop") are not calls for help."""
    if len(wanted) != 1:
        return False
    word = wanted[0]
    following = tokens[last + 1].text if last + 1 < len(tokens) else None
    preceding = tokens[first - 1].text if first > 0 else None
    return following in _FIXED_EXPRESSION_NEXT.get(word, frozenset()) or (
        preceding in _FIXED_EXPRESSION_PREVIOUS.get(word, frozenset())
    )


def _is_negated(tokens: Sequence[_Token], first: int, last: int, wanted: tuple[str, ...]) -> bool:
    clause = tokens[first].clause
    before = [token.text for token in tokens[max(0, first - _NEGATION_LOOKBACK) : first] if token.clause == clause]
    after = [token.text for token in tokens[last + 1 : last + 1 + _NEGATION_LOOKAHEAD] if token.clause == clause]
    negated_before = wanted[0] not in _NEGATORS and any(text in _NEGATORS for text in before)
    return negated_before or any(text in _TRAILING_NEGATORS for text in after)
