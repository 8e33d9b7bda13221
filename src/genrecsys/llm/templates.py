"""Versioned prompt templates: YAML files with a name, a version, the variables they take
and Jinja2 ``system``/``user`` messages. Built-ins live in ``llm/prompts/``; a user
directory given in config overrides them by name.

Every variable passes through :func:`~genrecsys.llm.safety.sanitize` (invisible and bidi
characters stripped); untrusted text should also go through the ``data`` filter, which
fences it in a block its content cannot close. Variables listed under ``id_variables``
are replaced by keyed pseudonyms when the prompt goes to a remote backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from genrecsys.llm.contracts import Contract, declared_contract, gbnf_alternatives, parse_declaration

from genrecsys.errors import GenrecsysError
from genrecsys.llm.types import Message

BUILTIN_DIR = Path(__file__).with_name("prompts")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    user: str
    system: str | None = None
    variables: tuple[str, ...] = ()
    id_variables: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    contract: Mapping[str, str] | None = field(default=None, hash=False)  # {kind: Jinja text}, see llm.contracts

    def contract_for(self, variables: Mapping[str, Any]) -> Contract | None:
        """The template's output contract rendered for one row (None: the template has none)."""
        if not self.contract:
            return None
        return declared_contract(self.contract, variables, _environment(), self.name)

    def render(self, variables: Mapping[str, Any], pseudonym_key: bytes | None = None, *,
               fence: bool = True) -> tuple[Message, ...]:
        """Render to chat messages. Missing variables are an error naming them.

        ``fence=False`` renders the ``data`` filter without its markers (the text still loses
        invisible characters): the unfenced side of the prompt-injection audit, never a default.

        >>> t = PromptTemplate(name="t", version="1", user="Title: {{ title | data }}", variables=("title",))
        >>> print(t.render({"title": "Heat"})[0]["content"])  # doctest: +ELLIPSIS
        Title: <<<data ...>>>
        Heat
        <<<end ...>>>
        """
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise GenrecsysError(f"template {self.name!r} needs variable(s) {', '.join(missing)}; "
                                 f"got {', '.join(sorted(variables)) or 'none'}")
        values = dict(variables)
        if pseudonym_key is not None:
            from genrecsys.llm.safety import pseudonymize

            for name in self.id_variables:
                if name in values:
                    values[name] = pseudonymize(values[name], pseudonym_key)
        env = _environment(fence)
        msgs: list[Message] = []
        try:
            system = env.from_string(self.system).render(values).strip() if self.system else ""
            if system:
                msgs.append({"role": "system", "content": system})
            msgs.append({"role": "user", "content": env.from_string(self.user).render(values).strip()})
        except Exception as exc:  # jinja's UndefinedError / TemplateSyntaxError, with the template named
            raise GenrecsysError(f"template {self.name!r} ({self.source or 'inline'}): {exc}") from None
        return tuple(msgs)


def _numbered(items: Any, start: int = 1) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, start))


def _lettered(items: Any) -> str:
    """A., B., ... labels (a one-token answer per item, for ``logprobs`` ranking)."""
    return "\n".join(f"{chr(65 + i)}. {x}" for i, x in enumerate(items))


def _unfenced(text: Any, label: str = "data") -> str:
    from genrecsys.llm.safety import strip_invisible

    return strip_invisible(text if isinstance(text, str) else str(text)).strip()


def _environment(fence: bool = True):
    import jinja2

    from genrecsys.llm.safety import data_block, sanitize

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                             finalize=sanitize)
    env.filters["data"] = data_block if fence else _unfenced
    env.filters["numbered"] = _numbered
    env.filters["lettered"] = _lettered
    env.filters["gbnf"] = gbnf_alternatives  # a closed list inside a grammar contract: ("a" | "b" | ...)
    return env


def parse_template(text: str, source: str = "") -> PromptTemplate:
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GenrecsysError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise GenrecsysError(f"{source}: a template is a YAML mapping with name, version, user")
    known = {"name", "version", "user", "system", "variables", "id_variables", "description", "contract"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise GenrecsysError(f"{source}: unknown template key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key in ("name", "version", "user"):
        if not raw.get(key):
            raise GenrecsysError(f"{source}: template needs a non-empty {key!r}")
    t = PromptTemplate(name=str(raw["name"]), version=str(raw["version"]), user=str(raw["user"]),
                       system=str(raw["system"]) if raw.get("system") else None,
                       variables=tuple(raw.get("variables") or ()), id_variables=tuple(raw.get("id_variables") or ()),
                       description=str(raw.get("description") or ""), source=source,
                       contract=parse_declaration(raw["contract"], source) if raw.get("contract") else None)
    import jinja2

    try:  # syntax errors surface when the template is loaded, not at row 5,000
        for body in (t.system, t.user, *(t.contract or {}).values()):
            if body:
                _environment().parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise GenrecsysError(f"{source}:{exc.lineno}: template syntax error: {exc.message}") from None
    return t


def _candidates(override_dir: str | Path | None) -> list[Path]:
    dirs = [Path(override_dir)] if override_dir else []
    return dirs + [BUILTIN_DIR]


def load_template(name_or_path: str | Path, override_dir: str | Path | None = None) -> PromptTemplate:
    """A template by name (user directory first, then built-ins) or by file path.

    >>> load_template("summarize_item").variables
    ('title', 'description', 'category')
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return parse_template(p.read_text(encoding="utf-8"), str(p))
    for d in _candidates(override_dir):
        for ext in (".yaml", ".yml"):
            f = d / f"{name_or_path}{ext}"
            if f.exists():
                return parse_template(f.read_text(encoding="utf-8"), str(f))
    names = sorted(t.name for t in list_templates(override_dir))
    raise GenrecsysError(f"unknown template {str(name_or_path)!r}; available: {', '.join(names)}")


def list_templates(override_dir: str | Path | None = None) -> list[PromptTemplate]:
    """Every template visible with this override directory; user files shadow built-ins."""
    seen: dict[str, PromptTemplate] = {}
    for d in _candidates(override_dir):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.y*ml")):
            t = parse_template(f.read_text(encoding="utf-8"), str(f))
            seen.setdefault(t.name, t)
    return sorted(seen.values(), key=lambda t: t.name)
