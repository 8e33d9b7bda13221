"""Output contracts: the shape an answer must have, enforced while it is generated.

A contract is one of four kinds, each a plain JSON-serialisable ``spec``:

- ``json``: a JSON Schema (dict) — the answer is one JSON value valid against it;
- ``regex``: a regular expression the whole answer matches;
- ``grammar``: a GBNF grammar (llama.cpp's syntax; xgrammar and llguidance read it too),
  whose ``root`` rule derives the whole answer;
- ``choice``: a list of strings, the answer is exactly one of them.

Backends that can constrain decoding (local transformers through a grammar engine,
llama.cpp, vLLM and other OpenAI-compatible servers) turn the contract into a mask on the
next token, so an answer is valid by construction; :meth:`Contract.check` is the
after-the-fact test used by the accounting and the tests, for every backend.

A template declares its contract under ``contract:`` (see :func:`declared_contract`) as a
Jinja string rendered with the row's variables, so a closed list (the allowed topics, the
catalog's titles) can be fed from a variable::

    contract:
      json: |
        {"type": "object", "properties": {"topics": {"type": "array",
         "items": {"enum": {{ topics | tojson }}}}}, "required": ["topics"]}

>>> c = Contract("choice", ("yes", "no"))
>>> c.check("yes"), c.check("maybe")
(None, "'maybe' is not one of the 2 choices")
>>> Contract("json", {"type": "object", "required": ["a"]}).check('{"b": 1}')
"JSON does not match the schema: 'a' is a required property"
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Mapping

from genrecsys.errors import GenrecsysError

KINDS = ("json", "regex", "grammar", "choice")
DECLARED = KINDS + ("pydantic",)  # pydantic: "package.module:Model" -> its JSON Schema


@dataclass(frozen=True)
class Contract:
    """What an answer must look like. ``spec`` is a schema dict, a pattern, a GBNF text or a
    tuple of choices, by ``kind``."""

    kind: str
    spec: Any

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GenrecsysError(f"unknown contract kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind == "choice":
            choices = tuple(str(c) for c in self.spec)
            if not choices:
                raise GenrecsysError("a choice contract needs at least one choice")
            object.__setattr__(self, "spec", choices)
        elif self.kind == "json":
            if not isinstance(self.spec, dict):
                raise GenrecsysError(f"a json contract's spec is a JSON Schema object, got {type(self.spec).__name__}")
        elif not isinstance(self.spec, str) or not self.spec.strip():
            raise GenrecsysError(f"a {self.kind} contract's spec is a non-empty string")

    # -- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": list(self.spec) if self.kind == "choice" else self.spec}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Contract":
        return cls(str(d["kind"]), d["spec"])

    @cached_property  # a catalog-sized grammar is hashed once, not at every cache key and compile
    def digest(self) -> str:
        """sha256 of the spec as written: the key compiled grammars and cached answers are
        stored under. Key order counts (a JSON Schema's property order is the order the
        answer's fields are generated in)."""
        return _digest(json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")))

    # -- forms backends take -----------------------------------------------------------------
    def gbnf(self) -> str | None:
        """The contract as a GBNF grammar where one exists without translation (grammar, choice)."""
        if self.kind == "grammar":
            return self.spec
        if self.kind == "choice":
            return "root ::= " + gbnf_alternatives(self.spec)
        return None

    def regex(self) -> str | None:
        if self.kind == "regex":
            return self.spec
        if self.kind == "choice":
            return "(" + "|".join(re.escape(c) for c in self.spec) + ")"
        return None

    # -- validation --------------------------------------------------------------------------
    def check(self, text: str) -> str | None:
        """None when ``text`` satisfies the contract, else what is wrong (one line)."""
        if self.kind == "choice":
            return None if text in self.spec else f"{_short(text)!r} is not one of the {len(self.spec)} choices"
        if self.kind == "regex":
            return None if _compiled_regex(self.spec).fullmatch(text) else "the answer does not match the pattern"
        if self.kind == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                return f"not JSON: {exc}"
            import jsonschema

            err = jsonschema.exceptions.best_match(_validator(json.dumps(self.spec)).iter_errors(value))
            return None if err is None else f"JSON does not match the schema: {err.message}"
        # A GBNF grammar has no Python recogniser here; the grammar engine's own matcher is
        # the judge (genrecsys.llm.grammar.accepts).
        from genrecsys.llm.grammar import accepts

        return None if accepts(self, text) else "the answer is not derived by the grammar"


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


@lru_cache(maxsize=64)
def _compiled_regex(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


@lru_cache(maxsize=64)
def _validator(schema_json: str):
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def check_schema(schema: Any, name: str = "schema") -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema, else a one-line error naming ``name``."""
    import jsonschema

    if not isinstance(schema, dict):
        raise GenrecsysError(f"{name}: a JSON Schema is an object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise GenrecsysError(f"{name}: not a valid JSON Schema: {exc.message}") from None
    return schema


def gbnf_literal(s: str) -> str:
    """A GBNF string literal for ``s`` (JSON's escaping is a subset GBNF reads).

    >>> gbnf_literal('Heat "95"')
    '"Heat \\\\"95\\\\""'
    """
    return json.dumps(str(s), ensure_ascii=False)


def gbnf_alternatives(values) -> str:
    """``("a" | "b" | ...)``: a GBNF group matching exactly one of ``values`` (duplicates dropped).

    >>> gbnf_alternatives(["Comedy", "Drama", "Comedy"])
    '("Comedy" | "Drama")'
    """
    seen = list(dict.fromkeys(str(v) for v in values))
    if not seen:
        raise GenrecsysError("an alternative list in a grammar needs at least one value")
    return "(" + " | ".join(gbnf_literal(v) for v in seen) + ")"


# ----------------------------------------------------------------------------- declarations
def parse_declaration(raw: Any, source: str) -> dict[str, str]:
    """A template's ``contract:`` mapping, checked: exactly one kind, its spec a string
    (a Jinja template for json/regex/grammar/choice, an import path for pydantic)."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise GenrecsysError(f"{source}: contract must be a mapping with exactly one of {', '.join(DECLARED)}")
    (kind, spec), = raw.items()
    if kind not in DECLARED:
        raise GenrecsysError(f"{source}: unknown contract kind {kind!r}; known: {', '.join(DECLARED)}")
    if kind == "choice" and isinstance(spec, list):
        spec = json.dumps(spec, ensure_ascii=False)
    elif kind == "json" and isinstance(spec, Mapping):
        spec = json.dumps(spec, ensure_ascii=False)
    if not isinstance(spec, str) or not spec.strip():
        raise GenrecsysError(f"{source}: contract {kind} needs a non-empty text")
    return {kind: spec}


def declared_contract(declaration: Mapping[str, str], values: Mapping[str, Any], env, name: str) -> Contract:
    """Render a template's contract declaration for one row of variables."""
    (kind, spec), = declaration.items()
    if kind == "pydantic":
        return Contract("json", pydantic_schema(spec))
    try:
        text = env.from_string(spec).render(values)
    except Exception as exc:  # jinja UndefinedError and friends, with the template named
        from jinja2 import meta

        missing = sorted(meta.find_undeclared_variables(env.parse(spec)) - set(values))
        hint = f" (variables not given: {', '.join(missing)})" if missing else ""
        raise GenrecsysError(f"template {name!r}: contract: {exc}{hint}") from None
    if kind in ("json", "choice"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise GenrecsysError(f"template {name!r}: contract {kind} does not render to JSON: {exc}") from None
        if kind == "json":
            return Contract("json", _checked_schema(json.dumps(parsed), name))
        if not isinstance(parsed, list):
            raise GenrecsysError(f"template {name!r}: a choice contract renders to a JSON list")
        return Contract("choice", tuple(parsed))
    return Contract(kind, text.strip() if kind == "grammar" else text)


@lru_cache(maxsize=64)
def _checked_schema(schema_json: str, name: str) -> dict[str, Any]:
    return check_schema(json.loads(schema_json), f"template {name!r}: contract")


@lru_cache(maxsize=32)
def pydantic_schema(path: str) -> dict[str, Any]:
    """The JSON Schema of a pydantic model named ``package.module:Model``."""
    import importlib

    module, _, attr = path.partition(":")
    try:
        model = getattr(importlib.import_module(module), attr)
        return model.model_json_schema()
    except (ImportError, AttributeError, ValueError) as exc:
        raise GenrecsysError(f"contract pydantic {path!r}: {type(exc).__name__}: {exc}") from None


def contract_from_files(schema: str | Path | None = None, choices: str | Path | None = None,
                        regex: str | None = None, grammar: str | Path | None = None) -> Contract | None:
    """The contract a command line gives: ``--schema FILE.json``, ``--choices FILE`` (one per
    line), ``--regex PATTERN`` or ``--grammar FILE.gbnf``; at most one."""
    given = [(k, v) for k, v in (("schema", schema), ("choices", choices), ("regex", regex), ("grammar", grammar))
             if v is not None]
    if not given:
        return None
    if len(given) > 1:
        raise GenrecsysError("give at most one of --schema, --choices, --regex, --grammar")
    kind, value = given[0]
    if kind == "regex":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise GenrecsysError(f"--regex {value!r} does not compile: {exc}") from None
        return Contract("regex", str(value))
    path = Path(value)
    if not path.is_file():
        raise GenrecsysError(f"--{kind} {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if kind == "schema":
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise GenrecsysError(f"--schema {path}: not JSON: {exc}") from None
        return Contract("json", check_schema(schema, f"--schema {path}"))
    if kind == "choices":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise GenrecsysError(f"--choices {path}: no choices (one per line)")
        return Contract("choice", tuple(lines))
    return Contract("grammar", text.strip())
