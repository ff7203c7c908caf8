"""Array literals for the sending path's statements: what goes in comes back."""

import pytest

from django.db import connection

from campaigns.sending.arrays import bool_array, int_array, text_array

TEXTS = [
    "",
    "plain",
    'a "quoted" word',
    'back\\slash and \\" both',
    "commas, {braces} and spaces ",
    "NULL",
    "Jürgen 👋 ünïcode",
    "line\nbreak\ttab",
]


def test_literals_are_written_as_postgres_reads_them():
    assert int_array([1, 22, 333]) == "{1,22,333}"
    assert int_array([]) == "{}"
    assert bool_array([True, False]) == "{t,f}"
    assert text_array(["a", 'b"c']) == '{"a","b\\"c"}'


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="array literals are PostgreSQL's"
)
def test_postgres_reads_back_every_value():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::bigint[], %s::boolean[]",
            [text_array(TEXTS), int_array([0, 2**40, 7]), bool_array([True, False])],
        )
        texts, ints, flags = cursor.fetchone()
    assert texts == TEXTS
    assert ints == [0, 2**40, 7]
    assert flags == [True, False]
