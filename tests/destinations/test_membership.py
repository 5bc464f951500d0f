"""What the audience destinations share: target fields by identifier and the sync check."""

from __future__ import annotations

from backhaul.destinations.base import Operation
from backhaul.destinations.base import SyncShape
from backhaul.destinations.membership import field_keys
from backhaul.destinations.membership import membership_problems
from backhaul.destinations.pii import META_SCHEMA
from backhaul.destinations.pii import PiiKey

ALIASES = {name: key for key, name in META_SCHEMA.items()}
GOOGLE = (PiiKey.EMAIL, PiiKey.PHONE, PiiKey.FIRST_NAME)


def shape(**changes: object) -> SyncShape:
    values: dict[str, object] = {
        "object": "123",
        "fields": ("email", "phone"),
        "match_fields": ("email",),
        "operations": frozenset({Operation.UPSERT, Operation.DELETE}),
        "membership": True,
    }
    values.update(changes)
    return SyncShape(**values)  # type: ignore[arg-type]


def test_fields_are_named_by_key_in_any_case_or_by_the_vendors_alias() -> None:
    known, unknown = field_keys(["Email", "FN", "ln", "plan"], tuple(META_SCHEMA), ALIASES)
    assert known == {"Email": PiiKey.EMAIL, "FN": PiiKey.FIRST_NAME, "ln": PiiKey.LAST_NAME}
    assert unknown == ["plan"]
    known, unknown = field_keys(["email", "city", "FN"], GOOGLE)
    assert (known, unknown) == ({"email": PiiKey.EMAIL}, ["city", "FN"])


def test_a_membership_sync_of_identifiers_matched_by_one_passes() -> None:
    assert membership_problems("acme", "list", shape(), GOOGLE, default_object=None) == []
    assert membership_problems("acme", "list", shape(object=None), GOOGLE, default_object="9") == []


def test_each_problem_names_its_key() -> None:
    def keys(s: SyncShape) -> list[str]:
        return [p.key for p in membership_problems("acme", "list", s, GOOGLE, default_object=None)]

    assert keys(shape(membership=False)) == ["mode"]
    assert keys(shape(object=None)) == ["object"]
    assert keys(shape(fields=("email", "plan"))) == ["mappings"]
    assert keys(shape(match_fields=("id",))) == ["match.fields"]
    assert keys(shape(match_fields=())) == ["match.fields"]
    [mode] = membership_problems(
        "acme", "list", shape(membership=False), GOOGLE, default_object=None
    )
    assert mode.message.startswith("a acme list only has members: set `mode: membership`")


def test_a_batch_that_neither_adds_nor_removes_is_refused() -> None:
    import pyarrow as pa
    import pytest

    from backhaul.destinations.base import Batch
    from backhaul.destinations.membership import require_membership
    from backhaul.errors import DestinationError
    from backhaul.errors import FailureType

    def batch(operation: Operation, membership: bool = True) -> Batch:
        table = pa.table({"email": ["a@x.com"]})
        return Batch(operation, table, ["1"], ["email"], membership=membership)

    require_membership("acme", batch(Operation.UPSERT))
    require_membership("acme", batch(Operation.DELETE))
    with pytest.raises(DestinationError, match="acme cannot clear: an audience only adds") as e:
        require_membership("acme", batch(Operation.CLEAR))
    assert e.value.failure is FailureType.CONFIG
    with pytest.raises(DestinationError, match="set `mode: membership`"):
        require_membership("acme", batch(Operation.UPSERT, membership=False))


def test_the_kept_list_is_the_object_else_the_default_and_one_is_needed() -> None:
    import pytest

    from backhaul.destinations.membership import kept_list
    from backhaul.errors import DestinationError
    from backhaul.errors import FailureType

    assert kept_list("acme", "list", "7", "9") == "7"
    assert kept_list("acme", "list", None, "9") == "9"
    with pytest.raises(DestinationError) as e:
        kept_list("acme", "list", None, None)
    assert e.value.failure is FailureType.CONFIG
    [problem] = membership_problems("acme", "list", shape(object=None), GOOGLE, default_object=None)
    assert str(e.value) == problem.message
