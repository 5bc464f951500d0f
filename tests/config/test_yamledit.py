"""The editors' YAML writer: values laid over a file as written keep its comments, key
order, quoting, flow lists and indentation; new files read as a person writes them."""

from __future__ import annotations

from backhaul.config.yamledit import edit_yaml

HAND = """\
# Leads to HubSpot, by hand.
model: leads
destination: 'crm'   # quoted on purpose
mode: upsert
match:
  fields: [email]
mappings:
  - {column: email, field: email}   # the identity
  - column: first_name
    field: firstname
"""


def test_an_unchanged_value_is_left_exactly_as_written() -> None:
    assert edit_yaml(HAND, {"model": "leads", "destination": "crm"}) == HAND


def test_one_changed_key_changes_one_line() -> None:
    assert edit_yaml(HAND, {"mode": "mirror"}) == HAND.replace("mode: upsert", "mode: mirror")


def test_a_list_of_mappings_changes_item_by_item() -> None:
    mappings = [
        {"column": "email", "field": "email"},
        {"column": "first_name", "field": "lastname"},
        {"column": "plan", "field": "plan", "cast": "string"},
    ]
    out = edit_yaml(HAND, {"mappings": mappings})
    assert "  - {column: email, field: email}   # the identity\n" in out
    assert "  - column: first_name\n    field: lastname\n" in out
    assert out.endswith("  - column: plan\n    field: plan\n    cast: string\n")
    assert out.startswith("# Leads to HubSpot, by hand.\n")


def test_none_removes_a_key_and_new_keys_go_last() -> None:
    out = edit_yaml(HAND, {"match": None, "description": "Leads scored today"})
    assert "match:" not in out and "fields: [email]" not in out
    assert out.endswith("description: Leads scored today\n")


def test_flush_dashes_stay_flush() -> None:
    text = "mappings:\n- {column: a, field: a}\n"
    out = edit_yaml(
        text, {"mappings": [{"column": "a", "field": "a"}, {"column": "b", "field": "b"}]}
    )
    assert out == "mappings:\n- {column: a, field: a}\n- {column: b, field: b}\n"


def test_a_new_file_reads_as_a_person_writes_it() -> None:
    out = edit_yaml(
        None,
        {
            "model": "leads",
            "mode": None,
            "match": {"fields": ["email"]},
            "mappings": [{"column": "email", "field": "email"}],
            "description": "Two\nlines",
        },
    )
    assert out == (
        "model: leads\nmatch:\n  fields: [email]\nmappings:\n"
        "  - {column: email, field: email}\ndescription: |\n  Two\n  lines\n"
    )
