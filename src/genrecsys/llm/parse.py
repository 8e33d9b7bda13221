"""Parsers for LLM answers: JSON (fenced, chatty, or cut off), GENRE bracketed fields,
numbered lists, and matching free-text labels to a closed vocabulary.

Small local models wrap JSON in prose and code fences, leave trailing commas, switch to
Python quotes, and stop mid-string when ``max_tokens`` runs out. Every parser here returns
a clean value or raises :class:`ParseError` saying what was wrong. ``ParseError.truncated``
tells a cut-off answer from a malformed one, so a caller can count truncations (the fix is
a larger ``max_tokens``, not a different prompt).
"""
from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is imported only by parse_json, so this module imports fast
    from pydantic import BaseModel, ValidationError


class ParseError(ValueError):
    """An LLM answer that could not be parsed; the message says what was wrong.

    ``truncated`` is True when the text looks cut off (an unclosed bracket or string),
    which usually means the model hit ``max_tokens``.

    >>> err = ParseError("JSON cut off: unterminated string", truncated=True)
    >>> str(err), err.truncated
    ('JSON cut off: unterminated string', True)
    """

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated

    def __reduce__(self):  # keep `truncated` when the error crosses a process boundary
        return (type(self), (str(self), self.truncated))


# ----------------------------------------------------------------------------- fences

# The rest of an opening fence line: an optional language tag, then the end of the line.
_FENCE_TAG = re.compile(r"[ \t]*[\w+#.-]*[ \t]*(?:\n|$)")
_FENCE_LINE = re.compile(r"^[ \t]*```[\w+#.-]*[ \t]*$", re.MULTILINE)


def strip_code_fences(text: str) -> str:
    """The content of the first ```-fenced block (stripped), or ``text`` unchanged if none.

    A language tag after the opening fence is dropped; an unterminated fence yields
    everything after its opening line.

    >>> strip_code_fences('Here you go:\\n```json\\n{"a": 1}\\n```\\nAnything else?')
    '{"a": 1}'
    >>> strip_code_fences("no fences")
    'no fences'
    """
    start = text.find("```")
    if start < 0:
        return text
    body = start + 3
    tag = _FENCE_TAG.match(text, body)
    if tag:  # "```json\n": skip the tag; "```{...}```" on one line has none to skip
        body = tag.end()
    end = text.find("```", body)
    return (text[body:] if end < 0 else text[body:end]).strip()


# ------------------------------------------------------------------------------- JSON

_CLOSER = {"{": "}", "[": "]"}
# What may follow an opening bracket in a real JSON (or Python-literal) value. Used to
# tell "{" that starts an answer from "{" in prose such as "use {name} here".
_VALUE_START = {dict: "\"'}", list: "\"'[]{-0123456789tfnTFN"}
_SPACES = re.compile(r"\s*")


def _scan(text: str, start: int) -> dict[int, tuple[int, str]]:
    """Match brackets from ``text[start]`` (an opener), skipping over quoted strings.

    Returns (end, status) for the opener at ``start`` and for every opener nested in it
    that the scan met outside a string: status is "closed" (``text[pos:end]`` is balanced),
    "mismatch" (a wrong closer at ``end - 1``), "unclosed" or "string" (the text ended
    inside the value, or inside a string in it; then ``end == len(text)``). A scan from a
    nested opener would give the same answer, so recording them all keeps degenerate
    answers such as "{{{{..." linear instead of quadratic.
    """
    found: dict[int, tuple[int, str]] = {}
    stack: list[tuple[str, int]] = []  # (expected closer, position of its opener)
    quote = ""
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 1  # skip the escaped character, which may be a quote
            elif c == quote:
                quote = ""
        elif c in "\"'":  # single quotes too, for Python-style dicts
            quote = c
        elif c in _CLOSER:
            stack.append((_CLOSER[c], i))
        elif c in "}]":
            closer, pos = stack.pop()
            if c != closer:
                found.update((p, (i + 1, "mismatch")) for _, p in [*stack, (closer, pos)])
                return found
            found[pos] = (i + 1, "closed")
            if not stack:
                return found
        i += 1
    status = "string" if quote else "unclosed"
    found.update((p, (n, status)) for _, p in stack)
    return found


def _drop_trailing_commas(candidate: str) -> str:
    """Remove commas that directly precede } or ] (outside strings): ``[1, 2,]`` -> ``[1, 2]``."""
    out: list[str] = []
    quote = ""
    i, n = 0, len(candidate)
    while i < n:
        c = candidate[i]
        if quote:
            if c == "\\" and i + 1 < n:
                out.append(c)
                i += 1
                c = candidate[i]
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == ",":
            j = i + 1
            while j < n and candidate[j].isspace():
                j += 1
            if j < n and candidate[j] in "}]":
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _is_json_like(obj: Any) -> bool:
    """True if ``obj`` is made only of what JSON can express (no tuples, sets, int keys)."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _is_json_like(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_is_json_like(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool))


def _loads(candidate: str) -> Any:
    """json.loads, then the same without trailing commas, then a literal-only Python parse.

    A repair is tried only when json's first error is one it fixes (a closer right after a
    comma; a quote or True/False/None): otherwise it cannot help, and skipping it keeps
    the cost linear when a looping model emits thousands of nested brackets.
    """
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        error = exc
    except (ValueError, RecursionError) as exc:  # an integer too long for int(), nesting too deep
        raise json.JSONDecodeError(f"unreadable value ({type(exc).__name__})", candidate, 0) from None
    pos = error.pos
    if candidate[pos:pos + 1] in ("}", "]") and candidate[:pos].rstrip().endswith(","):
        try:
            return json.loads(_drop_trailing_commas(candidate))
        except (ValueError, RecursionError):
            pass  # maybe also Python quotes: literal_eval accepts trailing commas
    elif not candidate.startswith(("'", "True", "False", "None"), pos):
        raise error
    try:
        # literal_eval evaluates literals only (no names, calls or attributes), so a
        # hostile answer cannot run code.
        obj = ast.literal_eval(candidate)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise error from None
    if not _is_json_like(obj):
        raise error
    return obj


def _looks_like_value(text: str, pos: int, kind: type) -> bool:
    j = _SPACES.match(text, pos).end()
    return j == len(text) or text[j] in _VALUE_START[kind]


def extract_json(text: str, kind: type = dict) -> Any:
    """The first complete JSON object (``kind=dict``) or array (``kind=list``) in ``text``.

    Prose and code fences around the value are ignored; trailing commas and Python-style
    single-quoted literals are accepted. Candidates are tried in order of their opening
    bracket; when one that looks like JSON fails to parse, the values nested inside it are
    skipped too, because they are fragments of it, not answers.

    Raises ParseError if nothing parses; ``truncated`` is set when a value is cut off (an
    opening bracket or a string that is never closed).

    >>> extract_json('Sure! ```json\\n{"title": "Heat", "year": 1995,}\\n``` Enjoy.')
    {'title': 'Heat', 'year': 1995}
    >>> extract_json('{"title": "Heat", "abstract": "A cop and a thi')
    Traceback (most recent call last):
    ...
    genrecsys.llm.parse.ParseError: JSON cut off: unterminated string
    """
    if kind not in (dict, list):
        raise TypeError(f"kind must be dict or list, got {kind!r}")
    opener = "{" if kind is dict else "["
    noun = "object" if kind is dict else "array"
    first_error: Exception | None = None
    i = text.find(opener)
    if i < 0:
        raise ParseError(f"no JSON {noun} found")
    scanned: dict[int, tuple[int, str]] = {}
    while i >= 0:
        if i not in scanned:
            scanned.update(_scan(text, i))
        end, status = scanned[i]
        looks = _looks_like_value(text, i + 1, kind)
        if status in ("unclosed", "string"):
            if looks:
                # An unclosed value runs to the end of the text, so every later opener is
                # nested in it: returning one of those would hand back a fragment.
                what = "unterminated string" if status == "string" else (
                    "unbalanced braces" if kind is dict else "unbalanced brackets")
                raise ParseError(f"JSON cut off: {what}", truncated=True)
            i = text.find(opener, i + 1)
            continue
        if status == "closed":
            try:
                obj = _loads(text[i:end])
            except (ValueError, RecursionError) as exc:
                first_error = first_error or exc
            else:
                if isinstance(obj, kind):
                    return obj
        i = text.find(opener, end if looks else i + 1)
    if isinstance(first_error, json.JSONDecodeError):
        raise ParseError(f"invalid JSON {noun}: {first_error.msg} "
                         f"(line {first_error.lineno}, column {first_error.colno})")
    raise ParseError(f"no valid JSON {noun} found")


def _summarize_validation(exc: ValidationError) -> str:
    """One line: "field 'a.0': msg; field 'b': msg"."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"field '{loc}': {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def parse_json(text: str, model: type[BaseModel] | None = None, kind: type = dict) -> Any:
    """:func:`extract_json`, then validation into ``model`` (a pydantic model) if given.

    A validation failure becomes a ParseError listing each bad field and why.

    >>> from pydantic import BaseModel
    >>> class News(BaseModel):
    ...     title: str
    ...     category: str
    >>> parse_json('{"title": "Rates rise", "category": "finance"}', News)
    News(title='Rates rise', category='finance')
    >>> parse_json('{"title": "Rates rise", "category": ["finance"]}', News)
    Traceback (most recent call last):
    ...
    genrecsys.llm.parse.ParseError: field 'category': Input should be a valid string
    """
    obj = extract_json(text, kind)
    if model is None:
        return obj
    from pydantic import ValidationError

    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise ParseError(_summarize_validation(exc)) from None


# --------------------------------------------------------------------- bracketed fields

# "[label]", optionally bold ("**[label]**", "**[label]:**") and followed by a colon.
_LABEL = re.compile(r"(?:\*\*|__)?\[([^\[\]\n]+)\](?:\*\*|__)?(?:[ \t]*:)?(?:\*\*|__)?")


def _norm_label(label: str) -> str:
    return " ".join(re.sub(r"[_-]", " ", label).casefold().split())


def _clean_value(value: str) -> str:
    value = value.strip().strip("*").strip()
    # "[region]: [California]": some models bracket the value too.
    if value[:1] == "[" and value[-1:] == "]" and value.count("[") == 1 and value.count("]") == 1:
        value = value[1:-1].strip()
    return value


def parse_bracketed(text: str, fields: Sequence[str]) -> dict[str, str]:
    """Values of GENRE-style labelled fields: ``[topics] health, travel``.

    A label is matched case-insensitively and may be bold or followed by a colon; its value
    runs, on the same line or the next ones, up to the next wanted label, the next
    ``[label]`` that starts a line, or the end. If a field appears more than once, its first
    non-empty value wins (models often echo the empty format first). A field that is present
    with nothing after it maps to "". A missing field raises ParseError naming it.

    >>> answer = "**[Topics]**: health, travel\\n[region]\\nCalifornia"
    >>> parse_bracketed(answer, ["topics", "region"])
    {'topics': 'health, travel', 'region': 'California'}
    """
    text = _FENCE_LINE.sub("", text)
    wanted = {_norm_label(f): f for f in fields}
    markers: list[tuple[int, int, str]] = []  # (start, end, normalized label)
    for m in _LABEL.finditer(text):
        label = _norm_label(m.group(1))
        line_start = text.rfind("\n", 0, m.start()) + 1
        # An unknown label ends the previous value only at the start of a line, so that
        # brackets inside a value ("[sic]") stay part of it.
        if label in wanted or not text[line_start:m.start()].strip():
            markers.append((m.start(), m.end(), label))
    values: dict[str, str] = {}
    for k, (_, end, label) in enumerate(markers):
        if label not in wanted:
            continue
        stop = markers[k + 1][0] if k + 1 < len(markers) else len(text)
        value, field = _clean_value(text[end:stop]), wanted[label]
        if field not in values or (value and not values[field]):
            values[field] = value
    missing = [f for f in fields if f not in values]
    if missing:
        noun = "field" if len(missing) == 1 else "fields"
        raise ParseError(f"missing bracketed {noun} " + ", ".join(f"[{f}]" for f in missing),
                         truncated=text.rfind("[") > text.rfind("]"))
    return {f: values[f] for f in fields}


# A data fence's tag (`<<<item 50d1cb99>>>`, safety.data_block) echoed back as an answer.
_DATA_TAG = re.compile(r"^\[?[a-z_]+ [0-9a-f]{8}\]?$", re.IGNORECASE)
# Format placeholders of the built-in templates that small models copy instead of answering.
TITLE_PLACEHOLDERS = frozenset({"new title", "title", "better title", "the new title", "title here"})


def check_title(title: str, max_words: int = 30) -> str:
    """The one validator of every parser that extracts a title (summarizer, generator,
    ``llm generate --parse title``): whitespace and bold markers tidied; empty answers,
    echoed data markers or fence tags, template placeholders and over-long answers are
    ParseErrors.

    >>> check_title("  **Heat:  a heist thriller** ")
    'Heat: a heist thriller'
    >>> check_title("item 50d1cb99")
    Traceback (most recent call last):
    ...
    genrecsys.llm.parse.ParseError: the answer is a data fence's tag, not a title
    """
    title = " ".join(title.replace("**", "").split()).strip(" .")
    if not title:
        raise ParseError("empty title")
    if "<<<" in title or ">>>" in title:
        raise ParseError("the answer repeats the prompt's data markers")
    if _DATA_TAG.match(title):
        raise ParseError("the answer is a data fence's tag, not a title")
    if title.casefold() in TITLE_PLACEHOLDERS:
        raise ParseError("the answer repeats the format placeholder instead of a title")
    if len(title.split()) > max_words:
        raise ParseError(f"a title has at most {max_words} words, got {len(title.split())}")
    return title


def parse_bracketed_value(text: str) -> str:
    """The content of the first non-empty ``[...]`` group: the one-field GENRE answer.

    >>> parse_bracketed_value("Enhanced title: [Heat (1995): a heist thriller]")
    'Heat (1995): a heist thriller'
    >>> parse_bracketed_value("[Heat (1995): a heist thr")
    Traceback (most recent call last):
    ...
    genrecsys.llm.parse.ParseError: bracketed value cut off: unclosed '['
    """
    pos = 0
    while True:
        opened = text.find("[", pos)
        if opened < 0:
            raise ParseError("no bracketed value" if pos == 0 else "only empty bracketed values")
        closed = text.find("]", opened + 1)
        if closed < 0:
            raise ParseError("bracketed value cut off: unclosed '['", truncated=True)
        value = text[opened + 1:closed].strip()
        if _DATA_TAG.match(value):  # the prompt's fence tag echoed back is never the value
            raise ParseError("the bracketed value is a data fence's tag, not an answer")
        if value:
            return value
        pos = closed + 1


# ------------------------------------------------------------------------------ lists

# "1. X", "1) X", "(1) X", "1: X", optionally bold ("**1.** X"). The space after the
# number keeps "1.5 stars" and "10:30" from reading as list items.
_NUMBERED = re.compile(r"^\s*(?:\*\*)?(?:\(\d{1,3}\)|\d{1,3}[.):])(?:\*\*)?\s+(.+)$", re.MULTILINE)
_BULLET = re.compile(r"^\s*[-*\u2022+]\s+(.+)$", re.MULTILINE)
_QUOTES = ('""', "''", "\u201c\u201d", "\u2018\u2019", "``")


def _clean_item(item: str) -> str:
    item = item.replace("**", "").strip()
    for pair in _QUOTES:
        if len(item) >= 2 and item[0] == pair[0] and item[-1] == pair[1]:
            return item[1:-1].strip()
    return item


def parse_numbered_list(text: str, min_items: int = 1) -> list[str]:
    """Items of a numbered list (``1.``, ``1)``, ``(1)``, ``1:``), in order.

    Bullets (``-``, ``*``, ``•``) count only when there are no numbered lines, so a
    numbered answer's sub-bullets are not mistaken for items. Markdown bold and quotes
    around an item are removed. Fewer than ``min_items`` items raises ParseError.

    >>> parse_numbered_list('Top picks:\\n1. **Heat**\\n2) "Ronin"\\n(3) Collateral')
    ['Heat', 'Ronin', 'Collateral']
    """
    items = [_clean_item(m) for m in _NUMBERED.findall(text)]
    if not items:
        items = [_clean_item(m) for m in _BULLET.findall(text)]
    items = [it for it in items if it]
    if not items and min_items > 0:
        raise ParseError("expected a numbered list, found none")
    if len(items) < min_items:
        raise ParseError(f"expected at least {min_items} list items, found {len(items)}")
    return items


_SEPARATORS = re.compile(r"[,;\n]|\s+and\s+", re.IGNORECASE)
_ITEM_PREFIX = re.compile(r"^(?:\(\d{1,3}\)|\d{1,3}[.):]|[-*\u2022])\s+")  # not "1.5 stars"


def split_list(value: str) -> list[str]:
    """Split a free-text list on commas, semicolons, newlines and " and ".

    Items keep their case; numbering, bullets, bold, quotes and a sentence-final period
    are removed; empty items are dropped.

    >>> split_list("Health, travel and food;\\n2. Finance.")
    ['Health', 'travel', 'food', 'Finance']
    """
    items = []
    for part in _SEPARATORS.split(value):
        item = _clean_item(_ITEM_PREFIX.sub("", part.strip()))
        # A lone final period ends the sentence; "U.S." keeps its dots.
        if item.endswith(".") and item.count(".") == 1:
            item = item[:-1].rstrip()
        if item:
            items.append(item)
    return items


# ------------------------------------------------------------------------- vocabulary

def norm_words(text: str) -> str:
    """Casefolded words without accents or punctuation: "Food & Drink!" -> "food and drink"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("&", " and "))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", plain).split())


def match_vocabulary(items: Iterable[str], vocabulary: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map free-text items onto a closed vocabulary.

    An item matches an entry when both are equal ignoring case, accents, spaces and
    punctuation, reading "&" as "and" ("Food & Drink" matches "foodanddrink"); or else
    when the entry occurs as whole words inside the item ("Technology news" matches
    "technology"; the longest such entry wins). Returns the matched entries (first-seen order, no duplicates) and the
    items that matched nothing (as given).

    >>> match_vocabulary(["Technology news", "Food & Drink", "gossip"],
    ...                  ["technology", "foodanddrink", "sports"])
    (['technology', 'foodanddrink'], ['gossip'])
    """
    exact: dict[str, str] = {}
    for entry in vocabulary:
        exact.setdefault(norm_words(entry).replace(" ", ""), entry)
    # Longest first, so "north america" wins over "america"; sorted() keeps vocabulary order on ties.
    phrases = sorted(((norm_words(e), e) for e in vocabulary if norm_words(e)), key=lambda p: -len(p[0]))
    matched: list[str] = []
    unmatched: list[str] = []
    for item in items:
        words = norm_words(item)
        if not words:
            continue
        entry = exact.get(words.replace(" ", ""))
        if entry is None:
            padded = f" {words} "
            entry = next((e for phrase, e in phrases if f" {phrase} " in padded), None)
        if entry is None:
            unmatched.append(item)
        elif entry not in matched:
            matched.append(entry)
    return matched, unmatched
