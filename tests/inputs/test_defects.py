"""Regressions of the defects found on users' own files (issue 29), one test each."""
from __future__ import annotations

import json

import pytest

from genrecsys.cli.main import main
from genrecsys.errors import GenrecsysError


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def _news(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "news.tsv").write_text("N1\tnews\tus\tA title\tAn abstract\thttp://x\t[]\t[]\n")


# 1 -------------------------------------------------------------------- MIND
def test_an_empty_mind_behaviors_file_is_a_one_line_error_naming_it(tmp_path):
    from genrecsys.data.mind import load_mind

    _news(tmp_path)
    (tmp_path / "behaviors.tsv").write_text("")
    with pytest.raises(GenrecsysError, match=r"behaviors.tsv: no behavior rows \(empty file\)"):
        load_mind(tmp_path)
    (tmp_path / "behaviors.tsv").write_bytes(b"1\tU1\t\xff\xfe\tN1\tN1-1\n")
    with pytest.raises(GenrecsysError, match=r"behaviors.tsv: not UTF-8 text"):
        load_mind(tmp_path)


# 2, 3 ------------------------------------------------------------- CLI numbers
@pytest.mark.parametrize("argv, flag", [
    (["recommend", "RUN", "--user", "1", "-k", "-3"], "-k"),
    (["recommend", "RUN", "--user", "1", "-k", "0"], "-k"),
    (["train", "--model", "pop", "--seeds", "0"], "--seeds"),
    (["train", "--model", "pop", "--seeds", "-2"], "--seeds"),
    (["train", "--model", "pop", "--lr", "0"], "--lr"),
    (["train", "--model", "pop", "--epochs", "ten"], "--epochs"),
    (["llm", "generate", "--input", "x", "--output", "y", "--top-p", "1.5"], "--top-p"),
    (["serve", "RUN", "--port", "-1"], "--port"),
])
def test_numbers_no_command_can_use_are_refused_before_anything_runs(argv, flag, capsys):
    code, err = _run(argv, capsys)
    assert code == 2 and f"argument {flag}" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].count("\n") == 0


def test_the_library_refuses_them_too(tmp_path):
    from genrecsys.config import ExperimentConfig
    from genrecsys.experiment import run_seeds
    from genrecsys.serve.recommend import recommend

    with pytest.raises(GenrecsysError, match="seeds must be at least 1, got 0"):
        run_seeds(ExperimentConfig(model="pop"), tmp_path, seeds=0)
    with pytest.raises(GenrecsysError, match="k must be at least 1, got -3"):
        recommend(None, None, ["1"], k=-3)


# 4 ---------------------------------------------------------------- RecBole atomic
@pytest.mark.parametrize("title_field, genre_field, genre_value, genres", [
    ("movie_title:token_seq", "class:token_seq", "Action Comedy", "Action|Comedy"),
    ("title:token", "genre:token", "Drama", "Drama"),
    ("name:token_seq", "categories:token_seq", "Pizza Bars", "Pizza|Bars"),
])
def test_atomic_item_fields_map_to_titles_and_categories_by_one_rule(tmp_path, title_field, genre_field, genre_value,
                                                                      genres):
    from genrecsys.data.load import load_dataset

    d = tmp_path / "mydata"
    d.mkdir()
    (d / "mydata.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                    + "".join(f"u{u}\ti{i}\t{u * 10 + i}\n" for u in range(3) for i in range(4)))
    (d / "mydata.item").write_text(f"item_id:token\t{title_field}\t{genre_field}\n"
                                   + "".join(f"i{i}\tThe Film {i}\t{genre_value}\n" for i in range(4)))
    ds = load_dataset(str(d))
    assert ds.titles()["i2"] == "The Film 2" and set(ds.items["genres"]) == {genres}


def test_recommend_on_an_atomic_dataset_prints_its_titles(tmp_path, capsys):
    d = tmp_path / "films"
    d.mkdir()
    (d / "films.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                   + "".join(f"u{u}\ti{(u + t) % 8}\t{t}\n" for u in range(12) for t in range(6)))
    (d / "films.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                  + "".join(f"i{i}\tFilm Number {i}\tDrama\n" for i in range(8)))
    assert main(["data", "prepare", "atomic", "--path", str(d)]) == 0
    out = tmp_path / "run"
    assert main(["train", "--model", "pop", "--dataset", str(d), "--output-dir", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u1", "-k", "2"]) == 0
    assert "Film Number" in capsys.readouterr().out


# 5 ------------------------------------------------------------------- titles
@pytest.mark.parametrize("answer", ["[new title]", "[item 50d1cb99]", "item 50d1cb99", "[Title: new title]",
                                    "<<<data 54c173bf>>>"])
def test_placeholders_and_fence_tags_are_never_titles(answer):
    from genrecsys.augment.summarize import parse_title
    from genrecsys.llm.parse import ParseError, parse_bracketed_value

    with pytest.raises(ParseError):
        parse_title(answer)
    if answer.startswith("[item"):
        with pytest.raises(ParseError, match="fence's tag"):
            parse_bracketed_value(answer)


def test_llm_generate_parse_title_is_the_summarizers_parser():
    import argparse

    from genrecsys.augment.summarize import parse_title
    from genrecsys.cli.llm import _parser

    assert _parser(argparse.Namespace(parse="title", fields=None)) is parse_title


# 6 ----------------------------------------------------------- files and paths
def test_empty_movielens_files_and_a_file_given_as_the_directory_say_what_is_wrong(tmp_path):
    from genrecsys.data.formats import load_movielens

    d = tmp_path / "ml-10m"
    d.mkdir()
    (d / "ratings.dat").write_text("")
    with pytest.raises(GenrecsysError, match=r"ratings.dat: no ratings \(empty file\)"):
        load_movielens(d)
    (d / "ratings.dat").write_text("1::10::4::978300760\n")
    (d / "movies.dat").write_text("\n")
    with pytest.raises(GenrecsysError, match=r"movies.dat: no rows \(empty file"):
        load_movielens(d)
    with pytest.raises(GenrecsysError, match="is a file; give the MovieLens directory"):
        load_movielens(d / "ratings.dat")


def test_the_missing_path_message_names_flags_that_exist(capsys, tmp_path):
    from genrecsys.data.load import load_dataset

    with pytest.raises(GenrecsysError) as exc:
        load_dataset("movielens", None)
    assert "name their directory as the dataset" in str(exc.value)
    code, err = _run(["data", "prepare", "ml-100k", "--path", str(tmp_path / "x.csv")], capsys)
    (tmp_path / "x.csv").write_text("a")
    code, err = _run(["data", "prepare", "ml-100k", "--path", str(tmp_path / "x.csv")], capsys)
    assert code != 0 and "is a file" in err and "not found" not in err


def test_an_empty_jsonl_input_is_an_error_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from genrecsys.llm import client

    def no_model(*a, **k):
        raise AssertionError("the LLM was built for an empty input")

    monkeypatch.setattr(client, "LLM", no_model)
    (tmp_path / "in.jsonl").write_text("\n\n")
    code, err = _run(["llm", "generate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                      "--template", "chat"], capsys)
    assert code != 0 and "in.jsonl: no input rows (empty file)" in err and not (tmp_path / "o.jsonl").exists()


# 7 ------------------------------------------------------------------- Amazon
def test_amazon_2018_titles_lose_their_html_entities(tmp_path):
    from genrecsys.data.formats import load_amazon

    reviews = tmp_path / "reviews.json"
    reviews.write_text(json.dumps({"reviewerID": "A", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}) + "\n")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"asin": "B1", "title": "Tom &amp; Jerry&#39;s &quot;Best&quot;",
                                "category": ["Movies &amp; TV"], "brand": "A&amp;B"}) + "\n")
    ds = load_amazon(reviews, meta)
    assert ds.titles()["B1"] == 'Tom & Jerry\'s "Best"'
    assert ds.items.loc[0, "categories"] == "Movies & TV" and ds.items.loc[0, "brand"] == "A&B"
