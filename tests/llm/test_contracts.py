"""Output contracts: declarations on templates, checks, command-line files, accounting."""
import json

import pytest
from pydantic import BaseModel

from genrecsys.errors import GenrecsysError
from genrecsys.llm.accounting import PriceTable
from genrecsys.llm.client import EchoBackend
from genrecsys.llm.contracts import Contract, contract_from_files, gbnf_alternatives
from genrecsys.llm.job import generate, render_requests
from genrecsys.llm.templates import load_template, parse_template
from genrecsys.llm.types import Completion, Request

SCHEMA = {"type": "object", "properties": {"topics": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["topics"], "additionalProperties": False}


@pytest.mark.parametrize("contract,good,bad", [
    (Contract("json", SCHEMA), '{"topics": ["a"]}', '{"topics": ["c"]}'),
    (Contract("json", SCHEMA), '{"topics": []}', "not json"),
    (Contract("regex", r"[a-c]{1,3}"), "abc", "abcd"),
    (Contract("choice", ["Heat (1995)", "Toy Story"]), "Toy Story", "Toy story"),
    (Contract("grammar", 'root ::= "[" [^\\]\\n]{3,10} "]"'), "[abc]", "[ab]"),
    (Contract("grammar", 'root ::= "1. " t "\\n2. " t\nt ::= ("Heat" | "Ronin")'), "1. Heat\n2. Ronin", "1. Heat\n2. Alien"),
])
def test_check_accepts_what_the_contract_derives_and_names_what_it_does_not(contract, good, bad):
    assert contract.check(good) is None
    problem = contract.check(bad)
    assert isinstance(problem, str) and "\n" not in problem


def test_choices_become_a_grammar_and_a_regex_that_match_exactly_them():
    c = Contract("choice", ['Say "hi"', "a|b"])
    assert c.gbnf() == 'root ::= ("Say \\"hi\\"" | "a|b")'
    assert c.check("a|b") is None and Contract("regex", c.regex()).check("a|b") is None
    assert Contract("regex", c.regex()).check("a") is not None
    assert gbnf_alternatives(["x", "x", "y"]) == '("x" | "y")'


def test_bad_contracts_are_refused_when_made():
    with pytest.raises(GenrecsysError, match="unknown contract kind"):
        Contract("xml", "x")
    with pytest.raises(GenrecsysError, match="at least one choice"):
        Contract("choice", [])
    with pytest.raises(GenrecsysError, match="JSON Schema object"):
        Contract("json", "[]")


def test_a_template_contract_is_rendered_per_row_from_its_variables():
    t = parse_template("name: t\nversion: '1'\nuser: 'Pick one of {{ options | join(\", \") }}'\nvariables: [options]\n"
                       "contract:\n  json: '{\"enum\": {{ options | tojson }}}'\n", "t.yaml")
    c1, c2 = t.contract_for({"options": ["x", "y"]}), t.contract_for({"options": ["z"]})
    assert c1.spec == {"enum": ["x", "y"]} and c2.spec == {"enum": ["z"]}
    reqs = render_requests(t, [{"options": ["x", "y"]}, {"options": ["z"]}], EchoBackend())
    assert [r.contract for r in reqs] == [c1, c2]
    assert [r.contract for r in render_requests(t, [{"options": ["x"]}], EchoBackend(), contracts=False)] == [None]


@pytest.mark.parametrize("yaml_contract,message", [
    ("contract:\n  xml: x\n", "unknown contract kind 'xml'"),
    ("contract:\n  json: x\n  regex: y\n", "exactly one of"),
    ("contract:\n  json: '{{ nope'\n", "template syntax error"),
])
def test_a_bad_contract_declaration_fails_when_the_template_loads(yaml_contract, message):
    with pytest.raises(GenrecsysError, match=message):
        parse_template("name: t\nversion: '1'\nuser: hi\n" + yaml_contract, "t.yaml")


@pytest.mark.parametrize("body,message", [
    ("json: 'not json {{ x }}'", "does not render to JSON"),
    ("json: '{\"type\": 12}'", "not a valid JSON Schema"),
    ("json: '{{ missing | tojson }}'", "missing"),
    ("choice: '{\"a\": 1}'", "renders to a JSON list"),
])
def test_a_contract_that_does_not_render_is_one_line_naming_the_template(body, message):
    t = parse_template(f"name: mine\nversion: '1'\nuser: hi\ncontract:\n  {body}\n", "t.yaml")
    with pytest.raises(GenrecsysError, match=message) as err:
        t.contract_for({"x": 1})
    assert "'mine'" in str(err.value) and "\n" not in str(err.value)


class Answer(BaseModel):
    title: str
    score: int


def test_a_pydantic_model_gives_its_json_schema():
    t = parse_template(f"name: t\nversion: '1'\nuser: hi\ncontract:\n  pydantic: {__name__}:Answer\n", "t.yaml")
    c = t.contract_for({})
    assert c.kind == "json" and set(c.spec["properties"]) == {"title", "score"}
    assert c.check('{"title": "x", "score": 1}') is None and c.check('{"title": "x"}') is not None


@pytest.mark.parametrize("name,row,good", [
    ("profile_user", {"history": ["Heat"], "topics": ["Drama", "Comedy"], "regions": []}, '{"topics": ["Drama"]}'),
    ("profile_user", {"history": ["Heat"], "topics": ["health"], "regions": ["Ohio"]},
     '{"topics": ["health"], "region": "none"}'),
    ("summarize_item", {"title": "Heat", "description": "d", "category": "c"}, "[Heat: a heist thriller]"),
    ("generate_item", {"history": ["Heat"], "categories": ["news", "sports"]},
     '{"title": "Big game", "abstract": "A game was played.", "category": "sports"}'),
    ("reland_cot", {"history": ["Heat"], "n_items": 2, "categories": ["Crime", "Drama"],
                    "titles": ["Heat (1995)", "Usual Suspects, The (1995)"]},
     "Step 1: Likes tense crime films.\nStep 2:\nCategories: Crime, Drama\nItems:\n1. Heat (1995)\n"
     "2. Usual Suspects, The (1995)"),
    ("reland_direct", {"history": ["Heat"], "n_items": 1, "titles": ["Heat (1995)"]}, "1. Heat (1995)"),
])
def test_every_builtin_template_has_a_contract_its_well_formed_answer_satisfies(name, row, good):
    c = load_template(name).contract_for(row)
    assert c is not None and c.check(good) is None


def test_the_reland_contract_refuses_items_outside_the_catalog_and_unknown_categories():
    row = {"history": ["Heat"], "n_items": 1, "categories": ["Crime"], "titles": ["Heat (1995)"]}
    c = load_template("reland_cot").contract_for(row)
    ok = "Step 1: Likes tense crime films.\nStep 2:\nCategories: Crime\nItems:\n1. Heat (1995)"
    assert c.check(ok) is None
    assert c.check(ok.replace("1. Heat (1995)", "1. Avatar (2009)")) is not None
    assert c.check(ok.replace("Categories: Crime", "Categories: Space")) is not None


def test_contract_files_from_the_command_line(tmp_path):
    schema, choices, bad, empty = (tmp_path / n for n in ("s.json", "c.txt", "bad.json", "e.txt"))
    schema.write_text(json.dumps(SCHEMA))
    choices.write_text("yes\n\nno\n")
    bad.write_text('{"type": "nonsense"}')
    empty.write_text("\n")
    assert contract_from_files(schema=schema) == Contract("json", SCHEMA)
    assert contract_from_files(choices=choices) == Contract("choice", ("yes", "no"))
    assert contract_from_files() is None
    for kw, message in [({"schema": bad}, "bad.json: not a valid JSON Schema"), ({"choices": empty}, "no choices"),
                        ({"schema": tmp_path / "nope.json"}, "no such file"), ({"regex": "("}, "does not compile"),
                        ({"schema": schema, "choices": choices}, "at most one")]:
        with pytest.raises(GenrecsysError, match=message):
            contract_from_files(**kw)


def test_answers_that_break_their_contract_are_counted_per_task():
    reqs = [Request.chat("a", task="t", contract=Contract("choice", ["echo: a"])),
            Request.chat("b", task="t", contract=Contract("choice", ["something else"])),
            Request.chat("c", task="u")]
    out, stats = generate(reqs, EchoBackend())
    assert [c.ok for c in out] == [True, True, True]
    assert stats.total.contract_violations == 1 and stats.task("t").contract_violations == 1
    assert stats.task("u").contract_violations == 0


def test_quality_counts_come_from_parsed_answers_and_from_callers():
    class Parsed:
        out_of_vocabulary = 2
        out_of_catalog = 1

    out, stats = generate([Request.chat("a", task="t")], EchoBackend(), parser=lambda text: Parsed())
    assert stats.total.out_of_vocabulary == 2 and stats.task("t").out_of_catalog == 1
    stats.count("t", format_failures=3)
    assert stats.total.format_failures == 3 and stats.to_dict()["tasks"]["t"]["format_failures"] == 3


def test_decode_time_is_split_between_constrained_and_free_answers():
    from genrecsys.llm.accounting import Usage

    u = Usage()
    u.add_time(Completion(text="x", completion_tokens=10, constrained=True), 2.0)
    u.add_time(Completion(text="y", completion_tokens=30), 3.0)
    assert u.constrained_tokens_per_s == 5.0 and u.unconstrained_tokens_per_s == 10.0
    u.add_row(Completion(text="x", constrained=True), PriceTable())
    u.add_row(Completion(text="x", constrained=True, cached=True), PriceTable())
    assert u.summary()["constrained_answers"] == 2  # cached answers were decoded under the contract too
