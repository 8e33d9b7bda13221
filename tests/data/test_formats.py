"""Official-format loaders on tiny fixtures written in each exact format."""
from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import pytest

from genrecsys.data import formats
from genrecsys.data.formats import load_amazon, load_movielens, load_yelp
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

FIXTURES = Path(__file__).parent / "fixtures"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def _replace_line(path: Path, lineno: int, text: str, encoding: str = "utf-8") -> None:
    lines = path.read_text(encoding=encoding).splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


# --------------------------------------------------------------------------- MovieLens

def test_ml1m_loads_ratings_movies_and_users_in_file_order():
    ds = load_movielens(FIXTURES / "ml-1m")
    assert ds.name == "ml-1m"
    assert list(ds.interactions["user"]) == ["1", "1", "1", "2", "2", "2", "3", "3"]
    assert list(ds.interactions["item"][:3]) == ["1193", "661", "914"]
    assert ds.interactions["timestamp"].tolist()[0] == 978300760
    assert ds.interactions["rating"].tolist()[:3] == [5.0, 3.0, 3.0]
    assert list(ds.users.columns) == ["user", "gender", "age", "occupation", "zip_code"]
    assert ds.users.iloc[1].tolist() == ["2", "M", "56", "16", "70072"]


def test_ml1m_latin1_titles_are_decoded_and_years_split_off():
    ds = load_movielens(FIXTURES / "ml-1m")
    row = ds.items.set_index("item").loc["73"]
    assert (row["title"], row["year"], row["genres"]) == ("Misérables, Les", "1995", "Drama|War")
    assert ds.titles()["1193"] == "One Flew Over the Cuckoo's Nest"


def test_ml10m_keeps_half_star_ratings_and_ignores_tags():
    ds = load_movielens(FIXTURES / "ml-10m")
    assert ds.name == "ml-10m"
    assert ds.interactions["rating"].tolist() == [5.0, 4.5, 3.5, 2.0]
    assert list(ds.users["user"]) == ["1", "2"]  # no users.dat: ids from the ratings
    assert ds.titles()["185"] == "Net, The"


def test_ml25m_csv_reads_quoted_titles_with_commas():
    ds = load_movielens(FIXTURES / "ml-25m")
    assert ds.name == "ml-25m"
    assert len(ds.interactions) == 5
    items = ds.items.set_index("item")
    assert items.loc["11", "title"] == "American President, The"
    assert items.loc["306", "title"] == "Three Colors: Red (Trois couleurs: Rouge)"
    assert items.loc["209171", "genres"] == ""  # "(no genres listed)"


@pytest.mark.parametrize("name", ["ml-1m", "ml-10m", "ml-25m"])
def test_load_movielens_reads_the_official_zip(name, tmp_path):
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (FIXTURES / name).iterdir():
            zf.write(f, f"{name}/{f.name}")
    from_zip, from_dir = load_movielens(archive), load_movielens(FIXTURES / name)
    assert from_zip.name == from_dir.name
    assert from_zip.interactions.equals(from_dir.interactions)


def test_load_movielens_error_inside_a_zip_names_the_archive_member(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(GenrecsysError, match=r"ml-1m\.zip/ml-1m/ratings\.dat:2: expected 4 fields"):
        load_movielens(archive)


def test_ml1m_crlf_endings_and_latin1_control_bytes_do_not_split_lines(tmp_path):
    d = _copy("ml-1m", tmp_path)
    for f in ("ratings.dat", "users.dat"):
        (d / f).write_bytes((d / f).read_bytes().replace(b"\n", b"\r\n"))
    # 0x85 decodes to U+0085, a line break for str.splitlines(), inside a latin-1 title.
    (d / "movies.dat").write_bytes(b"73::Les Mis\x85rables (1995)::Drama|War\r\n")
    ds = load_movielens(d)
    assert len(ds.interactions) == 8 and ds.users["zip_code"].tolist()[-1] == "55117"
    assert ds.items[["item", "title", "year", "genres"]].values.tolist() == [["73", "Les Mis\x85rables", "1995", "Drama|War"]]


def test_load_movielens_unknown_layout_names_expected_files(tmp_path):
    with pytest.raises(GenrecsysError, match="u.data, ratings.dat or ratings.csv"):
        load_movielens(tmp_path)
    with pytest.raises(GenrecsysError, match="not found"):
        load_movielens(tmp_path / "nope")


@pytest.mark.parametrize("name, sep, header", [("ml-1m", "::", False), ("ml-25m", ",", True)])
def test_fast_ratings_parser_agrees_with_line_scan(name, sep, header, monkeypatch):
    path = FIXTURES / name / ("ratings.csv" if header else "ratings.dat")
    reference = formats._scan_ratings(path, sep, header)

    def no_fallback(*args):
        raise AssertionError("a clean file fell back to the line scan")

    monkeypatch.setattr(formats, "_scan_ratings", no_fallback)
    fast = formats._read_ratings(path, sep, header)
    assert fast.astype({"user": str, "item": str}).equals(reference.astype({"user": str, "item": str}))


def test_ml1m_malformed_line_names_file_and_line(tmp_path):
    d = _copy("ml-1m", tmp_path)
    _replace_line(d / "ratings.dat", 3, "1::914::3")
    with pytest.raises(GenrecsysError, match=r"ratings\.dat:3: expected 4 fields"):
        load_movielens(d)


def test_ml1m_non_numeric_timestamp_names_line_and_field(tmp_path):
    d = _copy("ml-1m", tmp_path)
    _replace_line(d / "ratings.dat", 5, "2::661::2::yesterday")
    with pytest.raises(GenrecsysError, match=r"ratings\.dat:5: field 'timestamp'"):
        load_movielens(d)


def test_ml1m_single_colon_is_rejected_not_misread(tmp_path):
    # Read as ':'-separated, "1:9:661::3::978302109" has 7 fields; it must still fail.
    d = _copy("ml-1m", tmp_path)
    _replace_line(d / "ratings.dat", 2, "1:9:661::3::978302109")
    with pytest.raises(GenrecsysError, match=r"ratings\.dat:2: expected 4 fields"):
        load_movielens(d)


def test_ml1m_movies_wrong_field_count_names_file_and_line(tmp_path):
    d = _copy("ml-1m", tmp_path)
    _replace_line(d / "movies.dat", 2, "661::James and the Giant Peach (1996)", encoding="latin-1")
    with pytest.raises(GenrecsysError, match=r"movies\.dat:2: expected 3 fields"):
        load_movielens(d)


def test_ml1m_users_wrong_field_count_names_file_and_line(tmp_path):
    d = _copy("ml-1m", tmp_path)
    _replace_line(d / "users.dat", 3, "3::M::25::15")
    with pytest.raises(GenrecsysError, match=r"users\.dat:3: expected 5 fields"):
        load_movielens(d)


def test_ml25m_non_numeric_rating_counts_the_header_line(tmp_path):
    d = _copy("ml-25m", tmp_path)
    _replace_line(d / "ratings.csv", 3, "1,306,three,1147868817")
    with pytest.raises(GenrecsysError, match=r"ratings\.csv:3: field 'rating' is not a number: 'three'"):
        load_movielens(d)


def test_ml25m_movies_csv_wrong_field_count_names_line(tmp_path):
    d = _copy("ml-25m", tmp_path)
    _replace_line(d / "movies.csv", 2, "11,American President, The (1995),Comedy")  # unquoted comma
    with pytest.raises(GenrecsysError, match=r"movies\.csv:2: expected 3 fields"):
        load_movielens(d)


# --------------------------------------------------------------------------- Amazon

def test_amazon_2014_reviews_with_python_literal_metadata(tmp_path):
    ds = load_amazon(FIXTURES / "amazon-2014" / "reviews_Beauty_5.json", FIXTURES / "amazon-2014" / "meta_Beauty.json")
    assert ds.name == "Beauty"
    assert ds.interactions[["user", "item"]].iloc[0].tolist() == ["A1YJEY40YUW4SE", "7806397051"]
    assert ds.interactions["timestamp"].tolist() == [1391040000, 1397779200, 1378425600, 1365206400]
    items = ds.items.set_index("item")
    assert list(items.index) == ["7806397051", "9759091062", "B00004TMFE"]  # reviewed items only
    assert items.loc["7806397051", "categories"] == "Beauty|Makeup|Face|Skin Care"
    assert items.loc["9759091062", "title"] == "Le Club's Eyeliner"
    assert items.loc["B00004TMFE"].tolist() == ["", "", ""]  # reviewed, but absent from the metadata
    assert Dataset.load(ds.save(tmp_path / "beauty")).items.equals(ds.items)


def test_amazon_2018_json_metadata_first_row_of_a_repeated_asin_wins():
    ds = load_amazon(FIXTURES / "amazon-2018" / "Beauty_5.json", FIXTURES / "amazon-2018" / "meta_Beauty.json")
    assert ds.name == "Beauty"
    items = ds.items.set_index("item")
    assert items.loc["B00006L9LC", "title"] == "Citre Shine Moisture Burst Shampoo"
    assert items.loc["B00006L9LC", "categories"] == "Beauty & Personal Care|Hair Care|Shampoo"
    assert items.loc["B0000530HU", "brand"] == "Edge"


def test_amazon_reads_gzip_files(tmp_path):
    src = FIXTURES / "amazon-2014"
    for f in ("reviews_Beauty_5.json", "meta_Beauty.json"):
        with gzip.open(tmp_path / f"{f}.gz", "wb") as gz:
            gz.write((src / f).read_bytes())
    gz = load_amazon(tmp_path / "reviews_Beauty_5.json.gz", tmp_path / "meta_Beauty.json.gz")
    plain = load_amazon(src / "reviews_Beauty_5.json", src / "meta_Beauty.json")
    assert gz.name == "Beauty"
    assert gz.interactions.equals(plain.interactions) and gz.items.equals(plain.items)


def test_amazon_without_metadata_has_ids_only():
    ds = load_amazon(FIXTURES / "amazon-2018" / "Beauty_5.json")
    assert list(ds.items.columns) == ["item"]
    assert ds.n_users == 2


def _bad_reviews(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "reviews_Beauty_5.json"
    shutil.copy(FIXTURES / "amazon-2014" / "reviews_Beauty_5.json", path)
    _replace_line(path, 2, line)
    return path


def test_amazon_bad_json_names_file_and_line(tmp_path):
    with pytest.raises(GenrecsysError, match=r"reviews_Beauty_5\.json:2: invalid JSON"):
        load_amazon(_bad_reviews(tmp_path, '{"reviewerID": "A", "asin": '))


def test_amazon_missing_field_names_line_and_field(tmp_path):
    with pytest.raises(GenrecsysError, match=r"reviews_Beauty_5\.json:2: missing field 'overall'"):
        load_amazon(_bad_reviews(tmp_path, '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}'))


def test_amazon_non_numeric_rating_names_line_and_field(tmp_path):
    bad = '{"reviewerID": "A", "asin": "B", "overall": "five", "unixReviewTime": 1}'
    with pytest.raises(GenrecsysError, match=r"reviews_Beauty_5\.json:2: field 'overall' is not a number"):
        load_amazon(_bad_reviews(tmp_path, bad))


def test_amazon_unreadable_metadata_line_names_file_and_line(tmp_path):
    meta = tmp_path / "meta_Beauty.json"
    meta.write_text("{'asin': '7806397051', 'title': 'ok'}\n{'asin': 'x', 'title': \n")
    with pytest.raises(GenrecsysError, match=r"meta_Beauty\.json:2: neither JSON nor a Python dict literal"):
        load_amazon(FIXTURES / "amazon-2014" / "reviews_Beauty_5.json", meta)
    meta.write_text("{'title': 'no asin'}\n")
    with pytest.raises(GenrecsysError, match=r"meta_Beauty\.json:1: missing field 'asin'"):
        load_amazon(FIXTURES / "amazon-2014" / "reviews_Beauty_5.json", meta)


def test_amazon_missing_file_is_named(tmp_path):
    with pytest.raises(GenrecsysError, match="file not found: .*reviews_Toys_5.json"):
        load_amazon(tmp_path / "reviews_Toys_5.json")


# --------------------------------------------------------------------------- Yelp

def test_yelp_dates_become_utc_unix_seconds():
    ds = load_yelp(FIXTURES / "yelp")
    assert ds.interactions["timestamp"].tolist() == [1531001351, 1325604498, 100]
    assert ds.interactions["rating"].tolist() == [3.0, 5.0, 4.0]


def test_yelp_business_names_are_titles_and_categories_are_pipe_joined(tmp_path):
    ds = load_yelp(FIXTURES / "yelp")
    items = ds.items.set_index("item")
    assert list(items.index) == ["XQfwVwDr-v0ZS3_CbbE5Xw", "7ATYjTIgM3jUlt4UM3IypQ"]  # reviewed only
    assert items.loc["7ATYjTIgM3jUlt4UM3IypQ", "title"] == "Body Cycle Spinning Studio"
    assert items.loc["7ATYjTIgM3jUlt4UM3IypQ", "categories"] == "Active Life|Cycling Classes|Fitness & Instruction"
    assert ds.users.set_index("user").loc["OyoGAe7OKpv6SyGZT5g77Q", "review_count"] == 4333
    # Tables must stay Parquet-writable (one type per column).
    assert Dataset.load(ds.save(tmp_path / "yelp")).users.equals(ds.users)


def test_yelp_review_file_alone_is_enough(tmp_path):
    shutil.copy(FIXTURES / "yelp" / "yelp_academic_dataset_review.json", tmp_path)
    ds = load_yelp(tmp_path)
    assert list(ds.items.columns) == ["item"] and list(ds.users.columns) == ["user"]


def test_yelp_reads_gzip_review_file(tmp_path):
    with gzip.open(tmp_path / "yelp_academic_dataset_review.json.gz", "wb") as gz:
        gz.write((FIXTURES / "yelp" / "yelp_academic_dataset_review.json").read_bytes())
    assert len(load_yelp(tmp_path).interactions) == 3


def test_yelp_bad_date_names_line_and_field(tmp_path):
    d = _copy("yelp", tmp_path)
    _replace_line(d / "yelp_academic_dataset_review.json", 3,
                  '{"review_id":"r","user_id":"u","business_id":"b","stars":4.0,"date":"07/07/2018"}')
    with pytest.raises(GenrecsysError, match=r"review\.json:3: field 'date'"):
        load_yelp(d)


def test_yelp_bad_json_and_missing_field_name_the_line(tmp_path):
    d = _copy("yelp", tmp_path)
    _replace_line(d / "yelp_academic_dataset_business.json", 2, '{"business_id": ')
    with pytest.raises(GenrecsysError, match=r"business\.json:2: invalid JSON"):
        load_yelp(d)
    _replace_line(d / "yelp_academic_dataset_review.json", 1, '{"user_id":"u","business_id":"b","date":"2018-01-01"}')
    with pytest.raises(GenrecsysError, match=r"review\.json:1: missing field 'stars'"):
        load_yelp(d)


def test_yelp_missing_review_file_is_named(tmp_path):
    with pytest.raises(GenrecsysError, match="no yelp_academic_dataset_review.json"):
        load_yelp(tmp_path)
