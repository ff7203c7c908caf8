"""Per-contact personalization of campaign bodies: ``Hi {first_name|there}!``.

Syntax
    ``{name}`` inserts a value, ``{name|default}`` inserts ``default`` when the value
    is missing or empty, ``{{`` and ``}}`` are a literal ``{`` and ``}``. A default is
    taken verbatim (spaces included) and may hold anything but ``{``, ``}`` and ``|``;
    ``{name|}`` is an explicit empty default.

Names
    ``first_name``, ``last_name``, ``phone`` and ``full_name`` (first and last name
    joined by one space) come from the contact's fields and win over an attribute
    of the same name; any other name is looked up, case-sensitively, in the
    contact's ``attributes`` JSON object. Names are letters, digits, ``_``, ``-``
    and ``.`` (a dot is part of the key, not a path into nested objects).

Values
    Strings are inserted as they are and numbers with ``str()``; booleans, lists and
    objects as JSON (``true``, ``["a", "b"]``), which is how they were imported.
    ``None`` (JSON null), a missing key, an empty or whitespace-only string and an
    empty list or object count as missing. Nothing around an empty value is
    collapsed: ``"Hi {first_name} !"`` with no first name and no default renders
    ``"Hi  !"``, so give a default where that matters.

Parse once with :func:`parse` and call :meth:`Template.render` per recipient.
"""

import difflib
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import EmptyResultSet
from django.db import connections

from contacts.validators import attribute_key

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from contacts.models import Contact

logger = logging.getLogger(__name__)

#: Names filled from the contact's own fields rather than from ``attributes``.
CONTACT_FIELD_NAMES = frozenset({"first_name", "last_name", "phone", "full_name"})

#: The most attribute keys :func:`audience_attribute_keys` returns. An audience with
#: more distinct keys than this is almost certainly an import gone wrong, and the
#: composer cannot offer that many names anyway.
MAX_AUDIENCE_ATTRIBUTE_KEYS = 1000

# Longest excerpt of the body quoted in an error message; SMS bodies can be long and
# the composer shows the message inline.
_FRAGMENT_LENGTH = 40
_NAME_PUNCTUATION = frozenset("_-.")
_TEXT_RUN = re.compile(r"[^{}]+")


class TemplateError(ValueError):
    """A body that is not valid template syntax.

    ``position`` is the 1-based character where the problem is (what a person
    counting characters in the composer would say) and ``fragment`` the quoted
    excerpt of the body.
    """

    def __init__(self, message: str, *, position: int, fragment: str) -> None:
        super().__init__(message)
        self.position = position
        self.fragment = fragment


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``{name}`` or ``{name|default}``; ``default`` is None without a "|"."""

    name: str
    default: str | None = None

    def __str__(self) -> str:
        if self.default is None:
            return f"{{{self.name}}}"
        return f"{{{self.name}|{self.default}}}"


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed body: ``literals[0]``, then each placeholder followed by its literal.

    There is always one more literal than placeholders; literals hold the text with
    ``{{``/``}}`` already unescaped.
    """

    source: str
    literals: tuple[str, ...]
    placeholders: tuple[Placeholder, ...]

    def render(
        self,
        *,
        first_name: str,
        last_name: str,
        phone: str,
        attributes: Mapping[str, object],
    ) -> str:
        if not self.placeholders:
            return self.literals[0]
        pieces = [self.literals[0]]
        for placeholder, literal in zip(
            self.placeholders, self.literals[1:], strict=True
        ):
            match placeholder.name:
                case "first_name":
                    value: object = first_name
                case "last_name":
                    value = last_name
                case "phone":
                    value = phone
                case "full_name":
                    value = " ".join(
                        part for part in (first_name.strip(), last_name.strip()) if part
                    )
                case name:
                    value = attributes.get(name)
            text = _as_text(value)
            if not text.strip():
                text = placeholder.default or ""
            pieces.append(text)
            pieces.append(literal)
        return "".join(pieces)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    # bool before int: bool is an int subclass, and "True" is not what was imported.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | dict) and not value:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def _excerpt(body: str, start: int, end: int | None = None) -> str:
    """``body[start:end]`` cut to ``_FRAGMENT_LENGTH`` characters, marked with "…"."""
    end = len(body) if end is None else end
    if end - start <= _FRAGMENT_LENGTH:
        return body[start:end]
    return body[start : start + _FRAGMENT_LENGTH - 1] + "…"


def _fail(
    body: str, index: int, problem: str, hint: str, fragment: str
) -> TemplateError:
    return TemplateError(
        f'{problem} at character {index + 1}: "{fragment}". {hint}',
        position=index + 1,
        fragment=fragment,
    )


def _lead_up_to(body: str, index: int) -> str:
    """The text ending at ``body[index]``, "…" first when cut."""
    start = index + 1 - _FRAGMENT_LENGTH
    if start <= 0:
        return body[: index + 1]
    return "…" + body[start + 1 : index + 1]


def _is_name_character(char: str) -> bool:
    return char.isalnum() or char in _NAME_PUNCTUATION


def parse(body: str) -> Template:
    """Parse ``body`` once; raises :class:`TemplateError` on malformed syntax."""
    literals: list[str] = []
    placeholders: list[Placeholder] = []
    literal: list[str] = []
    index, length = 0, len(body)
    while index < length:
        char = body[index]
        if char == "{" and body.startswith("{{", index):
            literal.append("{")
            index += 2
        elif char == "}" and body.startswith("}}", index):
            literal.append("}")
            index += 2
        elif char == "}":
            # Quote what leads up to the brace: that is where the author looks.
            raise _fail(
                body,
                index,
                'Stray "}"',
                'Write "}}" for a literal brace or open the placeholder with "{".',
                _lead_up_to(body, index),
            )
        elif char == "{":
            placeholder, index = _parse_placeholder(body, index)
            literals.append("".join(literal))
            placeholders.append(placeholder)
            literal = []
        else:
            # Copy the run up to the next brace in one slice: bodies are mostly text.
            run = _TEXT_RUN.match(body, index)
            assert run is not None  # body[index] is not a brace
            literal.append(run.group())
            index = run.end()
    literals.append("".join(literal))
    return Template(
        source=body, literals=tuple(literals), placeholders=tuple(placeholders)
    )


def _parse_placeholder(body: str, start: int) -> tuple[Placeholder, int]:
    """Parse the placeholder opened at ``body[start]``; return it and the next index."""
    close = body.find("}", start + 1)
    nested = body.find("{", start + 1)
    if nested != -1 and (close == -1 or nested < close):
        raise _fail(
            body,
            nested,
            'Nested "{"',
            f"The placeholder opened at character {start + 1} is not closed yet, "
            'and placeholders cannot contain braces; write "{{" for a literal brace.',
            _excerpt(body, start, nested + 1),
        )
    if close == -1:
        raise _fail(
            body,
            start,
            'Unclosed "{"',
            'Close the placeholder with "}" or write "{{" for a literal brace.',
            _excerpt(body, start),
        )
    whole = _excerpt(body, start, close + 1)
    name, bar, default = body[start + 1 : close].partition("|")
    if not name:
        raise _fail(
            body,
            start,
            "Empty placeholder name",
            "Put a name such as first_name between the braces.",
            whole,
        )
    for offset, char in enumerate(name):
        if not _is_name_character(char):
            # Escape what would be invisible in the message: "\n", "\u00a0".
            shown = json.dumps(char, ensure_ascii=not char.isprintable())
            raise _fail(
                body,
                start + 1 + offset,
                f"Invalid character {shown} in placeholder name",
                'Names may use letters, digits, "_", "-" and ".".',
                whole,
            )
    if "|" in default:
        raise _fail(
            body,
            start + 1 + len(name) + 1 + default.index("|"),
            'Second "|" in placeholder',
            'A default cannot contain "|".',
            whole,
        )
    return Placeholder(name, default if bar else None), close + 1


def validate(body: str, *, known_attributes: Collection[str]) -> list[str]:
    """Problems with ``body`` for the people it would be sent to; empty means fine.

    ``known_attributes`` are the attribute keys present in the audience (see
    :func:`audience_attribute_keys`). A placeholder with a default is never a
    problem; one without a default must name a contact field or a known attribute.
    A key that only some contacts have is fine: the others get an empty value.
    """
    try:
        template = parse(body)
    except TemplateError as exc:
        return [str(exc)]
    known = CONTACT_FIELD_NAMES | set(known_attributes)
    problems: list[str] = []
    reported: set[str] = set()
    for placeholder in template.placeholders:
        name = placeholder.name
        if placeholder.default is not None or name in known or name in reported:
            continue
        reported.add(name)
        problem = (
            f"Unknown placeholder {{{name}}}: no contact in the audience has that "
            "attribute."
        )
        # Names are case-sensitive, so {First_Name} is the likely slip; imports name
        # attributes by contacts.validators.attribute_key ("City" → "city"), so
        # that spelling is the first suggestion.
        key = attribute_key(name)
        suggestions = (
            [key]
            if key in known
            else difflib.get_close_matches(name, sorted(known), n=1)
        )
        if suggestions:
            problem += f" Did you mean {{{suggestions[0]}}}?"
        problem += f" Add a default like {{{name}|there}} or fix the name."
        problems.append(problem)
    return problems


def audience_attribute_keys(
    contacts: "QuerySet[Contact]", *, limit: int = MAX_AUDIENCE_ATTRIBUTE_KEYS
) -> set[str]:
    """The distinct top-level ``attributes`` keys across ``contacts``.

    Computed in the database (``jsonb_object_keys`` on PostgreSQL, ``json_each`` on
    SQLite) in one query, so no contact is loaded into Python. At most ``limit``
    keys come back, the alphabetically first ones; when there are more, a warning
    is logged, and :func:`validate` may then call a real key unknown.
    Contacts whose ``attributes`` is not a JSON object contribute nothing.
    """
    connection = connections[contacts.db]
    query = contacts.query
    if query.distinct or query.combinator:
        # Selecting only ``attributes`` would change which rows DISTINCT (ON)
        # keeps, or a slice of them, and a union cannot be filtered: go through
        # the contacts' ids instead (one more pass over the table).
        ids = contacts.values("pk")
        if not query.is_sliced:
            # Ordering in a subquery is wasted work, and on PostgreSQL it clashes
            # with DISTINCT querysets (ORDER BY columns must be selected).
            ids = ids.order_by()
        contacts = contacts.model._base_manager.using(contacts.db).filter(pk__in=ids)
    rows = contacts.values("attributes")
    if not rows.query.is_sliced:
        rows = rows.order_by()  # ordering the rows is wasted work
    try:
        # Django writes the FROM and WHERE (with its own aliases), so the keys are
        # read in the same scan that filters the contacts.
        rows_sql, rows_params = rows.query.get_compiler(connection=connection).as_sql()
    except EmptyResultSet:  # e.g. .none() or filter(pk__in=[]): nothing to ask
        return set()
    # The subquery's one column is named after the field's column.
    attributes = connection.ops.quote_name(
        contacts.model._meta.get_field("attributes").column
    )
    # The CASE keeps arrays and scalars (including JSON null) out of the key
    # functions: jsonb_object_keys raises on them and json_each would yield indexes.
    if connection.vendor == "postgresql":
        # The keys as a lateral function (not a set-returning function in the
        # select list) let parallel workers drop duplicates before gathering.
        sql = (
            f"SELECT DISTINCT k.key FROM ({rows_sql}) c, jsonb_object_keys(CASE WHEN "
            f"jsonb_typeof(c.{attributes}) = 'object' THEN c.{attributes} "
            "ELSE '{}'::jsonb END) AS k(key) ORDER BY k.key LIMIT %s"
        )
    elif connection.vendor == "sqlite":
        sql = (
            f"SELECT DISTINCT j.key FROM ({rows_sql}) c, json_each(CASE WHEN "
            f"json_type(c.{attributes}) = 'object' THEN c.{attributes} "
            "ELSE '{}' END) j ORDER BY j.key LIMIT %s"
        )
    else:
        raise NotImplementedError(
            f"audience_attribute_keys() supports PostgreSQL and SQLite, not "
            f"{connection.vendor}."
        )
    # One more than the limit tells "exactly limit keys" from "more than limit".
    with connection.cursor() as cursor:
        cursor.execute(sql, (*rows_params, limit + 1))
        keys = [row[0] for row in cursor.fetchall()]
    if len(keys) > limit:
        logger.warning(
            "The audience has more than %d distinct attribute keys; "
            "only the first %d are used.",
            limit,
            limit,
        )
        keys = keys[:limit]
    return set(keys)


def sample_render(body: str, contact: "Contact") -> str:
    """``body`` rendered for one contact, e.g. for a preview; parses every call."""
    attributes = contact.attributes if isinstance(contact.attributes, dict) else {}
    return parse(body).render(
        first_name=contact.first_name,
        last_name=contact.last_name,
        phone=contact.phone,
        attributes=attributes,
    )
