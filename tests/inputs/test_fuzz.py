"""Property-based fuzzing of every loader, the CLI's numeric and path arguments, and every
LLM answer parser (issue 29). The only allowed outcomes: a correct load / parse, or a
`GenrecsysError` (a `ParseError` for parsers) of one line naming the file. A traceback of
any other exception fails.

CI runs the small "ci" profile (a few seconds per target); by hand:

    pytest -m fuzz --hypothesis-profile long tests/inputs/test_fuzz.py
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genrecsys.errors import GenrecsysError

pytestmark = pytest.mark.fuzz

# profiles "ci" (the default) and "long" are registered in tests/conftest.py
# ------------------------------------------------------------------ file contents
ML1M_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
ML1M_MOVIES = "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation\n"
ML_CSV = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,5.0,964982224\n"
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
MIND_NEWS = "N1\tnews\tus\tTitle one\tAbstract\thttp://x\t[]\t[]\nN2\tsports\tnfl\tTitle two\t\thttp://y\t[]\t[]\n"
MIND_BEH = "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N1-0\n2\tU2\t11/12/2019 1:00:00 PM\t\tN1-1\n"
ATOMIC_INTER = "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\nu2\ti1\t3\n"
ATOMIC_ITEM = "item_id:token\tmovie_title:token_seq\tclass:token_seq\ni1\tA film\tDrama\ni2\tB film\tAction Comedy\n"
REVIEWS = "".join(json.dumps({"reviewerID": f"R{i}", "asin": f"B{i % 2}", "overall": 4.0, "unixReviewTime": 100 + i}) + "\n"
                  for i in range(3))
YELP_REVIEWS = "".join(json.dumps({"review_id": f"r{i}", "user_id": f"U{i % 2}", "business_id": f"B{i}", "stars": 4,
                                   "date": f"2018-0{i + 1}-01 10:00:00"}) + "\n" for i in range(3))
YELP_BUSINESS = json.dumps({"business_id": "B0", "name": "Pizza &amp; Co", "categories": "Pizza, Bars"}) + "\n"
META = json.dumps({"asin": "B0", "title": "Tom &amp; Jerry", "category": ["Movies"]}) + "\n"


@st.composite
def mutated(draw, valid: str) -> bytes:
    """A valid file's bytes, broken the ways users' files are: truncated anywhere, a line
    cut, separators swapped, a column dropped, a huge field, stray non-UTF-8 bytes, empty,
    or random bytes."""
    data = valid.encode()
    how = draw(st.sampled_from(["truncate", "cut_line", "separator", "drop_column", "huge", "latin1", "empty",
                                "random", "blank_lines", "crlf"]))
    if how == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    if how == "cut_line":
        lines = valid.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        return "".join(lines).encode()
    if how == "separator":
        a, b = draw(st.sampled_from([("\t", ","), ("::", ":"), (",", ";"), ("\t", " "), ('"', "'"), (":", "\t")]))
        return valid.replace(a, b).encode()
    if how == "drop_column":
        sep = "\t" if "\t" in valid else ("::" if "::" in valid else ",")
        col = draw(st.integers(0, 3))
        return "".join(sep.join(c for j, c in enumerate(line.split(sep)) if j != col) + "\n"
                       for line in valid.splitlines()).encode()
    if how == "huge":
        return data.replace(b"1", b"9" * draw(st.integers(1, 200_000)), 1)
    if how == "latin1":
        pos = draw(st.integers(0, len(data)))
        return data[:pos] + draw(st.binary(min_size=1, max_size=4)) + data[pos:]
    if how == "empty":
        return b""
    if how == "blank_lines":
        return b"\n\n" + data.replace(b"\n", b"\n\n")
    if how == "crlf":
        return b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    return draw(st.binary(max_size=300))


def _check_outcome(load, files: dict[str, bytes], needs_items: bool = True) -> None:
    """``load(directory)`` either returns a consistent Dataset or raises one line naming a file."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "data"
        d.mkdir()
        for name, content in files.items():
            (d / name).write_bytes(content)
        try:
            ds = load(d)
        except GenrecsysError as exc:
            msg = str(exc)
            assert "\n" not in msg, f"a multi-line error: {msg!r}"
            assert str(d) in msg or any(name in msg for name in files), f"the error names no file: {msg!r}"
            return
        assert len(ds.interactions) > 0
        assert {"user", "item"} <= set(ds.interactions.columns)
        if needs_items:
            assert "item" in ds.items.columns


@given(ratings=mutated(ML1M_RATINGS), movies=mutated(ML1M_MOVIES))
def test_movielens_dat(ratings, movies):
    from genrecsys.data.formats import load_movielens

    _check_outcome(load_movielens, {"ratings.dat": ratings, "movies.dat": movies})


@given(ratings=mutated(ML_CSV))
def test_movielens_csv(ratings):
    from genrecsys.data.formats import load_movielens

    _check_outcome(load_movielens, {"ratings.csv": ratings})


@given(data=mutated(U_DATA))
def test_movielens_100k_u_data(data):
    from genrecsys.data.movielens import read_grouplens_100k

    _check_outcome(read_grouplens_100k, {"u.data": data})


@given(news=mutated(MIND_NEWS), behaviors=mutated(MIND_BEH))
def test_mind(news, behaviors):
    from genrecsys.data.mind import load_mind

    _check_outcome(load_mind, {"news.tsv": news, "behaviors.tsv": behaviors})


@given(inter=mutated(ATOMIC_INTER), item=mutated(ATOMIC_ITEM))
def test_recbole_atomic(inter, item):
    from genrecsys.data.atomic import load_atomic

    _check_outcome(lambda d: load_atomic(d, "data"), {"data.inter": inter, "data.item": item})


@given(reviews=mutated(REVIEWS), meta=mutated(META))
def test_amazon(reviews, meta):
    from genrecsys.data.formats import load_amazon

    _check_outcome(lambda d: load_amazon(d / "reviews.json", d / "meta.json"),
                   {"reviews.json": reviews, "meta.json": meta})


@given(reviews=mutated(YELP_REVIEWS), business=mutated(YELP_BUSINESS))
def test_yelp(reviews, business):
    from genrecsys.data.formats import load_yelp

    _check_outcome(load_yelp, {"yelp_academic_dataset_review.json": reviews,
                               "yelp_academic_dataset_business.json": business})


# ------------------------------------------------------------------ CLI arguments
NUMERIC = [(["train", "--model", "pop"], flag) for flag in ("--seeds", "--epochs", "--lr", "--batch-size", "--patience",
                                                            "--threads", "--weight-decay", "--max-seconds")]
NUMERIC += [(["recommend", "RUN", "--user", "1"], "-k"), (["serve", "RUN"], "--port"),
            (["serve", "RUN"], "--max-batch"), (["llm", "generate", "--input", "i", "--output", "o"], "--top-p"),
            (["llm", "generate", "--input", "i", "--output", "o"], "--max-tokens")]


@given(case=st.sampled_from(NUMERIC),
       value=st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(str),
                       st.text(max_size=12), st.sampled_from(["0", "-0", "1e309", "nan", "inf", "", " 3", "0x10"])))
def test_cli_numbers_parse_or_are_refused_in_one_line(case, value):
    import contextlib
    import io

    from genrecsys.cli.main import build_parser

    prefix, flag = case
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args([*prefix, flag, value])
    except SystemExit as exc:
        err = stderr.getvalue()
        assert exc.code == 2 and f"argument {flag}" in err and "Traceback" not in err
        return
    parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert math.isfinite(parsed)  # finite numbers only
    if flag in ("--seeds", "--epochs", "--batch-size", "--patience", "--threads", "-k", "--max-batch", "--max-tokens"):
        assert parsed >= 1


@given(path=st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(["/", ".", "..", "/etc/passwd", "nul\x00l"])))
def test_dataset_paths_load_or_fail_in_one_line(path):
    from genrecsys.data.load import load_dataset

    try:
        load_dataset("movielens", path)
    except GenrecsysError as exc:
        assert "\n" not in str(exc)
    except ValueError as exc:  # only the NUL byte, which no file system accepts
        assert "\x00" in path, exc


# ------------------------------------------------------------------ LLM answer parsers
def _parsers():
    from genrecsys.augment.generate import parse_item
    from genrecsys.augment.profile import parse_profile
    from genrecsys.augment.summarize import parse_title
    from genrecsys.augment.vocab import Vocabulary
    from genrecsys.llm import parse
    from genrecsys.reasoning.rationale import parse_rationale

    movies = Vocabulary.movies()
    return {
        "json": parse.parse_json, "bracketed": lambda t: parse.parse_bracketed(t, ["title", "abstract"]),
        "value": parse.parse_bracketed_value, "numbered": parse.parse_numbered_list, "title": parse_title,
        "item": lambda t: parse_item(t, ["Drama", "Comedy"]), "profile": lambda t: parse_profile(t, movies),
        "rationale": parse_rationale,
    }


ANSWERS = st.one_of(
    st.text(max_size=300),
    st.sampled_from(['{"title": "X", "category": "Drama"}', "[title] A\n[abstract] B", "1. A\n2. B", "[new title]",
                     "Step 1: likes drama.\nStep 2:\nCategories: Drama\nItems:\n1. Fargo (1996)", '{"topics": ["Drama"]}',
                     "```json\n{\"a\": [1, 2,]}\n```", "[", "{", "<<<data 1234abcd>>>", "\x00", "1." * 200,
                     '{"title": ' + "9" * 5000 + "}", "[" * 5000 + "]" * 5000, '{"topics": [' + "1e999" + "]}"]),
    st.builds(lambda a, b: a + b, st.sampled_from(["{", "[", "Step 1:", "1. ", '{"title": "']), st.text(max_size=80)),
)


@given(name=st.sampled_from(sorted(["json", "bracketed", "value", "numbered", "title", "item", "profile", "rationale"])),
       text=ANSWERS)
def test_llm_answer_parsers_parse_or_raise_parse_error(name, text):
    from genrecsys.llm.parse import ParseError

    try:
        _parsers()[name](text)
    except ParseError as exc:
        assert str(exc)
