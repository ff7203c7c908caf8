import dataclasses
import logging

import pytest
from hypothesis import given, strategies as st

from django.db.models import Count, JSONField, Value
from django.utils import timezone

from campaigns.templating import (
    Placeholder,
    TemplateError,
    audience_attribute_keys,
    parse,
    sample_render,
    validate,
)
from contacts.models import Contact
from tests.factories import ContactFactory, ListMembershipFactory


def render(body: str, **contact) -> str:
    fields = {"first_name": "", "last_name": "", "phone": "+14155550123"}
    fields.update(contact)
    fields.setdefault("attributes", {})
    return parse(body).render(**fields)


# Rendering


def test_placeholders_are_filled_from_contact_fields():
    body = "Hi {first_name} {last_name}, this is for {phone}."
    assert (
        render(body, first_name="Ada", last_name="Lovelace")
        == "Hi Ada Lovelace, this is for +14155550123."
    )


def test_full_name_joins_first_and_last_with_one_space():
    assert render("{full_name}!", first_name="Ada", last_name="Lovelace") == (
        "Ada Lovelace!"
    )
    assert render("{full_name}!", first_name="Ada") == "Ada!"
    assert render("{full_name}!", last_name=" Lovelace ") == "Lovelace!"
    assert render("{full_name|friend}!") == "friend!"


def test_default_is_used_when_the_value_is_missing_or_empty():
    body = "Hi {first_name|there}, see you in {city|town}."
    assert render(body) == "Hi there, see you in town."
    assert render(body, first_name="  ", attributes={"city": ""}) == (
        "Hi there, see you in town."
    )
    assert render(body, attributes={"city": None}) == "Hi there, see you in town."


def test_default_is_ignored_when_there_is_a_value():
    body = "Hi {first_name|there} from {city|town}"
    assert render(body, first_name="Ada", attributes={"city": "Austin"}) == (
        "Hi Ada from Austin"
    )


def test_default_keeps_spaces_and_punctuation():
    assert render("Hi {first_name| dear friend, & co.!}") == "Hi  dear friend, & co.!"


def test_missing_value_without_default_is_empty_and_spacing_is_kept():
    assert render("Hi {first_name} !") == "Hi  !"
    assert render("Code: {coupon}.") == "Code: ."


def test_empty_default_renders_nothing():
    template = parse("Hi{first_name|}!")
    assert template.placeholders == (Placeholder("first_name", ""),)
    assert render("Hi{first_name|}!") == "Hi!"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Austin", "Austin"),
        (42, "42"),
        (0, "0"),
        (-3, "-3"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (["a", "b"], '["a", "b"]'),
        ({"tier": "gold"}, '{"tier": "gold"}'),
        ("Zoë ☕", "Zoë ☕"),
    ],
)
def test_attribute_values_of_each_json_type(value, expected):
    assert render("[{value|default}]", attributes={"value": value}) == f"[{expected}]"


@pytest.mark.parametrize("value", [None, "", "   ", [], {}])
def test_null_and_empty_attribute_values_count_as_missing(value):
    assert render("[{value|default}]", attributes={"value": value}) == "[default]"


def test_attribute_names_are_case_sensitive_and_may_use_dots_and_dashes():
    attributes = {"City": "Austin", "city": "Boston", "loyalty.tier": 2, "zip-code": 1}
    body = "{City}/{city}/{loyalty.tier}/{zip-code}"
    assert render(body, attributes=attributes) == "Austin/Boston/2/1"


def test_contact_fields_win_over_attributes_of_the_same_name():
    body = "{first_name} {full_name}"
    attributes = {"first_name": "Attr", "full_name": "Attr Name"}
    assert render(body, first_name="Ada", attributes=attributes) == "Ada Ada"


def test_doubled_braces_are_literal_braces():
    assert render("{{first_name}} is {first_name}", first_name="Ada") == (
        "{first_name} is Ada"
    )
    assert render("{{{first_name}}}", first_name="Ada") == "{Ada}"
    assert render("}}{{") == "}{"


def test_same_template_renders_each_contact():
    template = parse("Hi {first_name|there}, {points} points")
    assert template.render(
        first_name="Ada", last_name="", phone="+1", attributes={"points": 10}
    ) == ("Hi Ada, 10 points")
    assert template.render(
        first_name="", last_name="", phone="+1", attributes={"points": 3}
    ) == ("Hi there, 3 points")


# Parsing


def test_placeholders_lists_names_and_defaults_in_order():
    template = parse("Hi {first_name|there}, {city} {{literal}} {first_name}")
    assert template.placeholders == (
        Placeholder("first_name", "there"),
        Placeholder("city", None),
        Placeholder("first_name", None),
    )
    assert [str(placeholder) for placeholder in template.placeholders] == [
        "{first_name|there}",
        "{city}",
        "{first_name}",
    ]


def test_body_without_placeholders_has_none():
    template = parse("Sale today only {{50%}}")
    assert template.placeholders == ()
    assert template.literals == ("Sale today only {50%}",)


def test_template_cannot_be_changed_after_parsing():
    template = parse("Hi {first_name}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.placeholders = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "message", "position"),
    [
        (
            "Hi there, {first_name Hi",
            'Unclosed "{" at character 11: "{first_name Hi". Close the placeholder '
            'with "}" or write "{{" for a literal brace.',
            11,
        ),
        (
            "Save 50%} today",
            'Stray "}" at character 9: "Save 50%}". Write "}}" for a literal brace '
            'or open the placeholder with "{".',
            9,
        ),
        (
            "Hi {}!",
            'Empty placeholder name at character 4: "{}". Put a name such as '
            "first_name between the braces.",
            4,
        ),
        (
            "Hi {|there}!",
            'Empty placeholder name at character 4: "{|there}". Put a name such as '
            "first_name between the braces.",
            4,
        ),
        (
            "Hi {first name}!",
            'Invalid character " " in placeholder name at character 10: '
            '"{first name}". Names may use letters, digits, "_", "-" and ".".',
            10,
        ),
        (
            "Hi {first\nname}",
            'Invalid character "\\n" in placeholder name at character 10: '
            '"{first\nname}". Names may use letters, digits, "_", "-" and ".".',
            10,
        ),
        (
            "Hi {first_name!}",
            'Invalid character "!" in placeholder name at character 15: '
            '"{first_name!}". Names may use letters, digits, "_", "-" and ".".',
            15,
        ),
        (
            "Hi {first_{name}}",
            'Nested "{" at character 11: "{first_{". The placeholder opened at '
            "character 4 is not closed yet, and placeholders cannot contain "
            'braces; write "{{" for a literal brace.',
            11,
        ),
        (
            "Hi {first_name|a|b}",
            'Second "|" in placeholder at character 17: "{first_name|a|b}". '
            'A default cannot contain "|".',
            17,
        ),
    ],
    ids=[
        "unclosed",
        "stray-close",
        "empty-name",
        "empty-name-with-default",
        "space-in-name",
        "newline-in-name",
        "punctuation-in-name",
        "nested",
        "pipe-in-default",
    ],
)
def test_malformed_syntax_names_the_position_and_fragment(body, message, position):
    with pytest.raises(TemplateError) as exc_info:
        parse(body)
    assert str(exc_info.value) == message
    assert exc_info.value.position == position
    assert isinstance(exc_info.value, ValueError)


def test_long_fragments_are_cut_short_in_the_message():
    with pytest.raises(TemplateError) as unclosed:
        parse("Hi {first_name " + "x" * 100)
    assert unclosed.value.fragment == "{first_name " + "x" * 27 + "…"

    with pytest.raises(TemplateError) as stray:
        parse("y" * 100 + "}")
    assert stray.value.fragment == "…" + "y" * 38 + "}"
    assert stray.value.position == 101


def test_single_closing_brace_after_a_placeholder_is_stray():
    with pytest.raises(TemplateError, match='Stray "}" at character 13'):
        parse("{first_name}}")


# validate()


def test_valid_body_has_no_problems():
    body = "Hi {first_name}, {full_name} {last_name} {phone}: {city}. {{x}}"
    assert validate(body, known_attributes={"city"}) == []


def test_unknown_placeholder_without_default_is_a_problem():
    assert validate("Hi {favorite_colour}", known_attributes={"city"}) == [
        "Unknown placeholder {favorite_colour}: no contact in the audience has "
        "that attribute. Add a default like {favorite_colour|there} or fix the name."
    ]


def test_unknown_placeholder_with_a_default_is_fine():
    assert validate("Hi {favorite_colour|friend} {nick|}", known_attributes=()) == []


def test_wrong_case_suggests_the_known_name():
    assert validate("Hi {First_name}", known_attributes={"city"}) == [
        "Unknown placeholder {First_name}: no contact in the audience has that "
        "attribute. Did you mean {first_name}? Add a default like "
        "{First_name|there} or fix the name."
    ]


def test_each_unknown_name_is_reported_once():
    problems = validate("{a} {b} {a} {b|x}", known_attributes=set())
    assert [problem.split(":")[0] for problem in problems] == [
        "Unknown placeholder {a}",
        "Unknown placeholder {b}",
    ]


def test_syntax_error_is_one_problem():
    assert validate("Hi {first_name {city}", known_attributes={"city"}) == [
        'Nested "{" at character 16: "{first_name {". The placeholder opened at '
        "character 4 is not closed yet, and placeholders cannot contain braces; "
        'write "{{" for a literal brace.'
    ]


# audience_attribute_keys() runs on whichever database the suite uses.


@pytest.mark.django_db
def test_audience_attribute_keys_are_distinct_across_contacts(
    django_assert_num_queries,
):
    ContactFactory(attributes={"city": "Austin", "points": 3})
    ContactFactory(attributes={"city": "Boston", "Tier": None, "zip-code": "02101"})
    ContactFactory(attributes={})
    with django_assert_num_queries(1):
        keys = audience_attribute_keys(Contact.objects.all())
    assert keys == {"city", "points", "Tier", "zip-code"}


@pytest.mark.django_db
def test_audience_attribute_keys_only_look_at_the_given_contacts():
    in_list = ListMembershipFactory(contact__attributes={"city": "Austin"})
    ListMembershipFactory(
        contact_list=in_list.contact_list, contact__attributes={"shoe": 9}
    )
    ContactFactory(attributes={"outsider": True})
    audience = Contact.objects.in_lists([in_list.contact_list]).order_by("last_name")
    assert audience_attribute_keys(audience) == {"city", "shoe"}
    assert audience_attribute_keys(Contact.objects.filter(attributes__shoe=9)) == {
        "shoe"
    }
    assert audience_attribute_keys(Contact.objects.none()) == set()


@pytest.mark.django_db
def test_audience_attribute_keys_skip_attributes_that_are_not_objects():
    ContactFactory(attributes=["city", "points"])
    ContactFactory(attributes="city")
    ContactFactory(attributes=7)
    json_null = ContactFactory()
    Contact.objects.filter(pk=json_null.pk).update(
        attributes=Value(None, output_field=JSONField())
    )
    ContactFactory(attributes={"city": "Austin"})
    assert audience_attribute_keys(Contact.objects.all()) == {"city"}


@pytest.mark.django_db
def test_audience_attribute_keys_work_on_a_sliced_queryset():
    ContactFactory(attributes={"old": 1})
    ContactFactory(attributes={"new": 1})
    assert audience_attribute_keys(Contact.objects.order_by("-id")[:1]) == {"new"}


@pytest.mark.django_db
def test_audience_attribute_keys_read_a_filtered_audience_in_one_query(
    django_assert_num_queries,
):
    member = ListMembershipFactory(contact__attributes={"city": "Austin"})
    ListMembershipFactory(
        contact_list=member.contact_list,
        contact__attributes={"opted": 1},
        contact__opted_out_at=timezone.now(),
    )
    ContactFactory(attributes={"outsider": True})
    audience = Contact.objects.in_lists([member.contact_list]).reachable()
    with django_assert_num_queries(1):
        assert audience_attribute_keys(audience) == {"city"}


@pytest.mark.django_db
def test_audience_attribute_keys_work_on_distinct_querysets():
    # Two lists: joining the memberships yields the first contact twice.
    first = ListMembershipFactory(contact__attributes={"city": "Austin"})
    ListMembershipFactory(contact=first.contact)
    ListMembershipFactory(contact__attributes={"shoe": 9})
    ContactFactory(attributes={"outsider": True})
    members = Contact.objects.filter(memberships__isnull=False)
    assert audience_attribute_keys(members.distinct()) == {"city", "shoe"}
    # The first two distinct contacts by id, not two joined rows of the first.
    first_two = members.distinct().order_by("pk")[:2]
    assert audience_attribute_keys(first_two) == {"city", "shoe"}
    assert audience_attribute_keys(members.order_by("pk")[:2]) == {"city"}


@pytest.mark.django_db
def test_audience_attribute_keys_work_on_unions_and_aggregates():
    two_lists = ListMembershipFactory(contact__attributes={"city": "Austin"})
    ListMembershipFactory(contact=two_lists.contact)
    one_list = ListMembershipFactory(contact__attributes={"shoe": 9})
    ContactFactory(attributes={"outsider": True})
    union = Contact.objects.filter(pk=two_lists.contact.pk).union(
        Contact.objects.filter(pk=one_list.contact.pk)
    )
    assert audience_attribute_keys(union) == {"city", "shoe"}
    in_two_lists = Contact.objects.annotate(list_count=Count("memberships")).filter(
        list_count__gt=1
    )
    assert audience_attribute_keys(in_two_lists) == {"city"}


@pytest.mark.django_db
def test_audience_attribute_keys_stop_at_the_limit_and_warn(caplog):
    ContactFactory(attributes={f"key{n:02d}": n for n in range(12)})
    with caplog.at_level(logging.WARNING, logger="campaigns.templating"):
        keys = audience_attribute_keys(Contact.objects.all(), limit=10)
    assert keys == {f"key{n:02d}" for n in range(10)}
    assert "more than 10 distinct attribute keys" in caplog.text

    caplog.clear()
    assert len(audience_attribute_keys(Contact.objects.all(), limit=12)) == 12
    assert caplog.text == ""


@pytest.mark.django_db
def test_audience_attribute_keys_ignore_sql_in_key_names():
    key = "x'); DROP TABLE contacts_contact; --"
    ContactFactory(attributes={key: 1})
    assert audience_attribute_keys(Contact.objects.filter(phone__contains="'")) == set()
    assert audience_attribute_keys(Contact.objects.all()) == {key}
    assert Contact.objects.count() == 1


# sample_render()


@pytest.mark.django_db
def test_sample_render_uses_the_contacts_fields_and_attributes():
    contact = ContactFactory(
        first_name="Ada",
        last_name="Lovelace",
        phone="+14155550123",
        attributes={"city": "London", "points": 12},
    )
    body = "Hi {full_name} ({phone}) in {city}: {points} points, {tier|no tier}"
    assert sample_render(body, contact) == (
        "Hi Ada Lovelace (+14155550123) in London: 12 points, no tier"
    )


def test_sample_render_treats_non_object_attributes_as_empty():
    contact = Contact(first_name="Ada", phone="+14155550123", attributes=["city"])
    assert sample_render("{first_name} from {city|nowhere}", contact) == (
        "Ada from nowhere"
    )


# Properties

no_braces = st.text(alphabet=st.characters(exclude_characters="{}"))


@given(no_braces)
def test_text_without_braces_renders_unchanged(text):
    assert render(text, first_name="Ada", attributes={"city": "Austin"}) == text


@given(st.text())
def test_escaped_text_renders_back_to_itself(text):
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert render(escaped, first_name="Ada") == text


@given(
    st.one_of(
        st.text(),
        # Mostly syntax characters, so the parser's error paths get exercised.
        st.text(alphabet=st.sampled_from("{}|{}|ab_.- \n")),
    )
)
def test_parse_raises_only_template_error(text):
    try:
        template = parse(text)
    except TemplateError as exc:
        error = exc
    else:
        assert len(template.literals) == len(template.placeholders) + 1
        return
    assert 1 <= error.position <= len(text)
    # The fragment is a piece of the body, with "…" where it was cut.
    fragment = error.fragment
    assert fragment in text or fragment[1:] in text or fragment[:-1] in text
