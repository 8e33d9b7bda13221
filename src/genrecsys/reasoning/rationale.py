"""Reading an LLM's recommendation rationale (RELAND §3.1.2): steps, categories, items.

The answer the CoT template asks for is ``Step 1: <one sentence>`` then ``Step 2:`` with
``Categories:`` and a numbered ``Items:`` list (optionally ``Step 0:`` first). Small models
follow that loosely, so the step splitter accepts, in order of trust: ``Step N`` markers
(``Step 1:``, ``**Step 2**``, ``Step two -``), named headers (``Summary:``,
``Preferences:`` / ``Recommendations:``, ``Categories:``, ``Items:``), and bare ``1.`` /
``2.`` lines when there are no more than three of them (a longer numbered list is a list
of items, not of steps). When nothing parses, the whole text serves as both Step 1 and
Step 2 and ``parsed`` is False; parsing never raises.

Every item the model names is matched back to the catalog (:class:`TitleCatalog`) or
reported as not in it; nothing is invented.

>>> r = parse_rationale("Step 1: Likes 90s thrillers.\\nStep 2: Categories: Thriller, Crime\\n"
...                     "Items:\\n1. Heat (1995)\\n2. The Usual Suspects")
>>> r.parsed, r.step1, r.categories, r.item_names
(True, 'Likes 90s thrillers.', ('Thriller', 'Crime'), ('Heat (1995)', 'The Usual Suspects'))
>>> cat = TitleCatalog({1: "Heat", 2: "Usual Suspects, The", 3: "Toy Story"}, {1: "1995", 2: "1995", 3: "1995"})
>>> cat.match_all(r.item_names + ("Avengers: Endgame",))
((1, 2), ('Avengers: Endgame',))
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping, Sequence

from genrecsys.llm.parse import parse_numbered_list, split_list

_WORD_NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3"}

# "Step 1:", "**Step 2**", "### Step one -", "Step 2." at a line start.
_STEP = re.compile(r"^[ \t>#*_]*step[ \t]*(\d|zero|one|two|three)\b[ \t]*(?:\*\*|__)?[ \t]*"
                   r"(?:[:.)\-\u2013\u2014][ \t]*)?"
                   r"(?:\*\*|__)?[ \t]*", re.IGNORECASE | re.MULTILINE)
# "... done. Step 2: ..." inside a line (small models and collapsed whitespace): the colon is required.
_STEP_INLINE = re.compile(r"(?<=\s)(?:\*\*|__)?step[ \t]*(\d|zero|one|two|three)[ \t]*(?:\*\*|__)?[ \t]*:"
                          r"[ \t]*(?:\*\*|__)?[ \t]*", re.IGNORECASE)
# Named headers a model uses instead of step numbers (the step each one opens).
_HEADERS = {
    0: r"condensed history|history summary|condensed",
    1: r"summary|user preferences?|preferences?|preference summary|profile",
    2: r"recommendations?|recommended(?: categories and items| items)?|categories|genres|items|movies",
}
_HEADER = re.compile(r"^[ \t>#*_]*(" + "|".join(f"(?P<h{k}>{v})" for k, v in _HEADERS.items())
                     + r")[ \t]*(?:\*\*|__)?[ \t]*:[ \t]*(?:\*\*|__)?[ \t]*", re.IGNORECASE | re.MULTILINE)
_BARE = re.compile(r"^[ \t]*(?:\*\*)?([0-3])[.)](?:\*\*)?[ \t]+", re.MULTILINE)
_ANY_NUMBERED = re.compile(r"^[ \t]*(?:\*\*)?\(?\d{1,3}[.):]", re.MULTILINE)
_CATEGORIES = re.compile(r"(?:^|\n)[ \t*_#]*(?:recommended[ \t]+)?(?:categories|genres)[ \t]*(?:\*\*|__)?[ \t]*:"
                         r"(?:\*\*|__)?[ \t]*([^\n]*)", re.IGNORECASE)
_ITEMS = re.compile(r"(?:^|\n)[ \t*_#]*(?:recommended[ \t]+)?(?:items|movies|titles)[ \t]*(?:\*\*|__)?[ \t]*:"
                    r"(?:\*\*|__)?[ \t]*", re.IGNORECASE)
_QUOTED = re.compile(r"[\"\u201c]([^\"\u201c\u201d\n]{2,80})[\"\u201d]")


@dataclass(frozen=True)
class Rationale:
    """One LLM answer split into its steps. ``text`` is always the raw answer."""

    text: str
    step0: str = ""
    step1: str = ""  # the preference summary (the paper's explanation)
    step2: str = ""  # recommended categories and items (the paper encodes this text)
    parsed: bool = False  # True: Step 1 and Step 2 both found; a missing step holds the whole text
    categories: tuple[str, ...] = ()
    item_names: tuple[str, ...] = ()  # items as the model wrote them, before catalog matching


def _split_at(text: str, marks: list[tuple[int, int, int]]) -> dict[int, str]:
    """Step number -> its text, from (start, end, step) markers; a step marked twice keeps both parts."""
    out: dict[int, str] = {}
    marks = sorted(marks)
    for j, (_, end, step) in enumerate(marks):
        stop = marks[j + 1][0] if j + 1 < len(marks) else len(text)
        body = text[end:stop].strip()
        if step in out:
            out[step] = (out[step] + "\n" + body).strip()  # a repeated header continues its step
        else:
            out[step] = body
    return out


def split_steps(text: str) -> dict[int, str] | None:
    """Steps 0-2 of an answer, or None when no step structure is found.

    The readings are tried in order of trust (``Step N`` markers, named headers, bare
    numbers); the first that finds both Step 1 and Step 2 wins, else the first that finds
    either.
    """
    marks = _step_marks(text)
    readings = [r for r in (_split_at(text, marks) if marks else None, _by_markers_then_headers(text, marks),
                            _by_headers(text), _by_bare_numbers(text))
                if r and (r.get(1) or r.get(2))]
    return next((r for r in readings if r.get(1) and r.get(2)), readings[0] if readings else None)


def _step_marks(text: str) -> list[tuple[int, int, int]]:
    """(start, end, step) of every ``Step N`` marker for steps 0-2, none inside another."""
    found = {m.start(): m for m in _STEP_INLINE.finditer(text)}
    found.update({m.start(): m for m in _STEP.finditer(text)})
    marks = [(m.start(), m.end(), int(_WORD_NUMBERS.get(m.group(1).lower(), m.group(1)))) for m in found.values()]
    return [m for m in marks if m[2] <= 2 and not any(o[0] < m[0] < o[1] for o in marks)]


def _by_markers_then_headers(text: str, marks: list[tuple[int, int, int]]) -> dict[int, str] | None:
    """A ``Step 1`` marker followed by the template's Step 2 body without its marker.

    SmolLM2 often writes "Step 1: ..." and then goes straight to "Categories: ..." or
    "Items: ...": the first Step-2 header after Step 1 opens Step 2 (labels kept).
    """
    if any(m[2] == 2 for m in marks) or not any(m[2] == 1 for m in marks):
        return None
    one_end = min(m for m in marks if m[2] == 1)[1]
    header = next((h for h in _HEADER.finditer(text, one_end) if h.group("h2")), None)
    if header is None:
        return None
    at = header.start()  # an empty-width mark: Step 2's text keeps its "Categories:" label
    steps = _split_at(text, [m for m in marks if m[0] < at] + [(at, at, 2)])
    return steps if steps.get(1) else None


def _by_headers(text: str) -> dict[int, str] | None:
    # Only the first header of each step opens it; a later "Items:" stays inside Step 2.
    first: dict[int, tuple[int, int, int]] = {}
    for m in _HEADER.finditer(text):
        step = next(k for k in _HEADERS if m.group(f"h{k}"))
        first.setdefault(step, (m.start(), m.end(), step))
    if not first:
        return None
    steps = _split_at(text, list(first.values()))
    if 2 in steps:  # keep the "Categories:"/"Items:" labels: step 2's structure reads them
        start = first[2][0]
        stop = min([mk[0] for mk in first.values() if mk[0] > start], default=len(text))
        steps[2] = text[start:stop].strip()
    return steps


def _by_bare_numbers(text: str) -> dict[int, str] | None:
    if len(_ANY_NUMBERED.findall(text)) > 3:  # a longer numbered list is items, not steps
        return None
    bare = [(m.start(), m.end(), int(m.group(1))) for m in _BARE.finditer(text)]
    return _split_at(text, bare) if {1, 2} <= {b[2] for b in bare} else None


def _step2_parts(step2: str, structured: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(categories, item names) of a Step 2 text.

    Names come from the ``Items:`` part (else the text minus the ``Categories:`` line): a
    numbered or bulleted list, else quoted titles, else, after an ``Items:`` label or in a
    Step 2 found by its marker, a comma/semicolon/line-separated list whose pieces are
    short enough to be titles (prose is not mined for names).
    """
    categories: tuple[str, ...] = ()
    m = _CATEGORIES.search(step2)
    if m:
        categories = tuple(split_list(m.group(1)))
    rest = step2
    it = _ITEMS.search(step2)
    if it:
        rest = step2[it.end():]
    elif m:
        rest = step2[:m.start()] + step2[m.end():]
    names = parse_numbered_list(rest, min_items=0) or _QUOTED.findall(rest)
    if not names and (it or structured):
        pieces = split_titles(rest)
        if it or all(len(p.split()) <= _MAX_TITLE_WORDS for p in pieces):
            names = pieces
    cleaned = (_clean_name(n) for n in names)
    return categories, tuple(n for n in cleaned if n)


_MAX_TITLE_WORDS = 8


def _clean_name(name: str) -> str:
    return name.strip().strip("*_\"'\u201c\u201d").strip().rstrip(".,;").strip()


def parse_rationale(text: str, fallback: str = "") -> Rationale:
    """Split an answer into steps and pull out categories and item names; never raises.

    ``parsed`` is True when both Step 1 and Step 2 were found. A step that was not found
    holds the whole answer (``fallback`` when the answer is blank), so every rationale
    has text to encode and to show.
    """
    text = text if isinstance(text, str) else ""
    body = text.strip() or fallback
    steps = split_steps(text) or {}
    step1, step2 = steps.get(1, ""), steps.get(2, "")
    cats, names = _step2_parts(step2 or body, structured=bool(step2))
    return Rationale(text=text, step0=steps.get(0, ""), step1=step1 or body, step2=step2 or body,
                     parsed=bool(step1 and step2), categories=cats, item_names=names)


# ----------------------------------------------------------------------------- catalog

_YEAR = re.compile(r"\s*[(\[]\s*(\d{4})\s*[)\]]\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|das|der|die|el)$", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"^(the|a|an)\s+")
# Where a model appends commentary to a title: "Heat - a tense heist film", "Heat: great".
_DIGITS = re.compile(r"\d+")
_TAIL = re.compile(r"\s+[-\u2013\u2014]\s+|:\s+|\s+[([]")


def split_year(title: str) -> tuple[str, str]:
    """'Heat (1995)' -> ('Heat', '1995'); no year -> (title, '')."""
    m = _YEAR.search(title)
    return (title[:m.start()].strip(), m.group(1)) if m else (title.strip(), "")


def normalize_title(title: str) -> str:
    """A key for title matching: year, accents, punctuation and articles removed.

    ML-100K writes "Usual Suspects, The"; models write "The Usual Suspects".

    >>> normalize_title("Usual Suspects, The (1995)") == normalize_title("the usual suspects!")
    True
    """
    name, _ = split_year(title)
    m = _TRAILING_ARTICLE.match(name.strip())
    if m:
        name = f"{m.group(2)} {m.group(1)}"
    decomposed = unicodedata.normalize("NFKD", name.casefold().replace("&", " and "))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = " ".join(re.sub(r"[\W_]+", " ", plain).split())
    return _LEADING_ARTICLE.sub("", words)


class TitleCatalog:
    """Item titles, looked up by a model's free-text name.

    A name matches on its normalised title (:func:`normalize_title`: case, accents,
    punctuation, articles and a trailing year ignored); failing that, on the name cut
    before a commentary tail (" - ...", ": ...", " (..."); failing that, on the closest
    title by difflib ratio >= ``cutoff``. When several items share a title, a year in the
    name picks among them, else the lowest item index wins.
    """

    def __init__(self, titles: Mapping[int, str], years: Mapping[int, str] | None = None, cutoff: float = 0.9):
        self.cutoff = cutoff
        self._by_key: dict[str, list[int]] = {}
        self._years = {int(k): str(v) for k, v in (years or {}).items()}
        self.titles = {int(k): str(v) for k, v in titles.items()}
        for item in sorted(self.titles):
            title, year = split_year(self.titles[item])
            if year and item not in self._years:
                self._years[item] = year
            key = normalize_title(title)
            if key:
                self._by_key.setdefault(key, []).append(item)
        self._keys = list(self._by_key)

    @classmethod
    def from_split(cls, split, cutoff: float = 0.9) -> "TitleCatalog":
        """Titles of the split's items (index 1..I) from the dataset's item table; an item
        without a title is listed under its raw id."""
        items = split.dataset.items
        have = "title" in items.columns
        by_raw = dict(zip(items["item"].astype(str), items["title"].astype(str))) if have else {}
        year_raw = dict(zip(items["item"].astype(str), items["year"].astype(str))) if "year" in items.columns else {}
        titles, years = {}, {}
        for idx in range(1, split.n_items + 1):
            raw = str(split.item_ids[idx])
            titles[idx] = by_raw.get(raw) or f"item {raw}"
            if year_raw.get(raw):
                years[idx] = year_raw[raw]
        return cls(titles, years, cutoff)

    def display(self, item: int) -> str:
        """'Title (year)', the way prompts show an item."""
        title, year = self.titles[item], self._years.get(item, "")
        return f"{title} ({year})" if year and not split_year(title)[1] else title

    def _pick(self, items: list[int], year: str) -> int:
        if year:
            for i in items:
                if self._years.get(i) == year:
                    return i
        return items[0]

    def match(self, name: str) -> int | None:
        """The item a name refers to, or None when it is not in the catalog."""
        _, year = split_year(name)
        candidates = [name] + [name[:m.start()] for m in _TAIL.finditer(name) if m.start() > 0]
        for cand in candidates:
            key = normalize_title(cand)
            if key in self._by_key:
                return self._pick(self._by_key[key], year)
        for cand in candidates:
            key = normalize_title(cand)
            if not key:
                continue
            # "Alien 4" is not "Alien 3": a near miss must carry the same numbers
            close = [c for c in difflib.get_close_matches(key, self._keys, n=3, cutoff=self.cutoff)
                     if _DIGITS.findall(c) == _DIGITS.findall(key)]
            if close:
                return self._pick(self._by_key[close[0]], year)
        return None

    def match_all(self, names: Sequence[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """(matched item indices, first-seen order without repeats; names not in the catalog).

        A name that matches nothing and holds a comma-separated run of titles ("1. Heat,
        Ronin, Usual Suspects, The") is split, keeping a trailing article with its title.
        """
        matched: list[int] = []
        unmatched: list[str] = []
        for name in names:
            item = self.match(name)
            found = [(name, item)]
            if item is None and name.count(",") >= 2:
                found = [(part, self.match(part)) for part in split_titles(name)]
            for part, item in found:
                if item is None:
                    if part not in unmatched:
                        unmatched.append(part)
                elif item not in matched:
                    matched.append(item)
        return tuple(matched), tuple(unmatched)


_ARTICLE = re.compile(r"^(the|a|an|les|la|le|il|das|der|die|el)$", re.IGNORECASE)


def split_titles(text: str) -> list[str]:
    """Titles of a comma-, semicolon- or line-separated list; a trailing article stays
    with its title, as ML-100K writes it.

    >>> split_titles("Heat, Ronin; Usual Suspects, The")
    ['Heat', 'Ronin', 'Usual Suspects, The']
    """
    out: list[str] = []
    for piece in (p.strip() for p in re.split(r"[,;\n]", text)):
        if not piece:
            continue
        if _ARTICLE.match(split_year(piece)[0]) and out:
            out[-1] = f"{out[-1]}, {piece}"
        else:
            out.append(piece)
    return out
