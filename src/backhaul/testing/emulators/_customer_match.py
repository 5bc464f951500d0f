"""Customer Match lists, offline user data jobs and the rules their operations must follow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from backhaul.testing.emulators._audience import MOBILE_ID
from backhaul.testing.emulators._audience import Membership
from backhaul.testing.emulators._audience import hash_problem

KEY_FIELDS = {
    "CONTACT_INFO": {"hashedEmail", "hashedPhoneNumber", "addressInfo"},
    "CRM_ID": {"thirdPartyUserId"},
    "MOBILE_ADVERTISING_ID": {"mobileId"},
}
SNAKE = {
    "hashedEmail": "hashed_email",
    "hashedPhoneNumber": "hashed_phone_number",
    "addressInfo": "address_info",
    "thirdPartyUserId": "third_party_user_id",
    "mobileId": "mobile_id",
}
ADDRESS = ("hashedFirstName", "hashedLastName", "countryCode", "postalCode")


class AdsError(Exception):
    """One GoogleAdsError: an error code (``{kind: code}``), a message, a field path."""

    def __init__(
        self, kind: str, code: str, message: str, path: list[dict[str, Any]] | None = None
    ):
        super().__init__(message)
        self.kind, self.code, self.message, self.path = kind, code, message, path or []

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errorCode": {self.kind: self.code}, "message": self.message}
        if self.path:
            out["location"] = {"fieldPathElements": self.path}
        return out


@dataclass
class UserList:
    id: str
    customer_id: str
    name: str
    upload_key_type: str
    members: Membership = field(default_factory=Membership)

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/userLists/{self.id}"


@dataclass
class Job:
    id: str
    customer_id: str
    user_list: UserList
    status: str = "PENDING"
    operations: list[tuple[str, frozenset[tuple[str, str]]]] = field(default_factory=list)
    polls: int = 0
    failure_reason: str = "UNSPECIFIED"
    fail_with: str | None = None

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/offlineUserDataJobs/{self.id}"

    def apply(self) -> None:
        """Apply the job's operations to its list, in order."""
        members = self.user_list.members
        for kind, member in self.operations:
            if kind == "removeAll":
                members.clear()
            elif kind == "create":
                members.add(member)
            else:
                members.remove(member)


@dataclass(frozen=True)
class OperationRules:
    """How ``addOperations`` checks each operation (the emulator's settings of the moment)."""

    max_per_request: int
    max_per_operation: int
    allow_mixed_operations: bool
    remove_all_first: bool
    require_full_address: bool
    lowercase_hashes_only: bool
    rejects: Mapping[str, str]

    @staticmethod
    def identifiers(op: Any) -> list[Any]:
        if not isinstance(op, dict):
            return []
        spec = op.get("create") or op.get("remove")
        ids = spec.get("userIdentifiers") if isinstance(spec, dict) else None
        return ids if isinstance(ids, list) else []

    def operation(
        self, i: int, op: Any, job: Job, kinds: set[str], *, first: bool
    ) -> tuple[str, frozenset[tuple[str, str]]]:
        at: list[dict[str, Any]] = [{"fieldName": "operations", "index": i}]
        given = [k for k in ("create", "remove", "removeAll") if isinstance(op, dict) and op.get(k)]
        if len(given) != 1:
            raise AdsError(
                "fieldError",
                "INVALID_VALUE",
                "Each operation has exactly one of create, remove or removeAll.",
                at,
            )
        kind = given[0]
        if kind == "removeAll":
            if not first and self.remove_all_first:
                raise AdsError(
                    "offlineUserDataJobError",
                    "INVALID_OPERATION_ORDER",
                    "When a remove-all operation is provided, it has to be the first operation of the operation list.",
                    at,
                )
            return "removeAll", frozenset()
        other = "remove" if kind == "create" else "create"
        if other in kinds and not self.allow_mixed_operations:
            raise AdsError(
                "offlineUserDataJobError",
                "CONFLICTING_OPERATION",
                "Mixing creation and removal of offline data in the same job is not allowed.",
                at,
            )
        at = [*at, {"fieldName": kind}]
        ids = self.identifiers(op)
        if not ids:
            raise AdsError(
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                "The user identifier is missing valid data.",
                at,
            )
        if len(ids) > self.max_per_operation:
            raise AdsError(
                "offlineUserDataJobError",
                "TOO_MANY_USER_IDENTIFIERS",
                f"Maximum number of user identifiers allowed per request is {self.max_per_request} and per operation is {self.max_per_operation}.",
                at,
            )
        member = [self._identifier(j, ident, job, at) for j, ident in enumerate(ids)]
        return kind, frozenset(member)

    def _identifier(
        self, j: int, ident: Any, job: Job, at: list[dict[str, Any]]
    ) -> tuple[str, str]:
        here = [*at, {"fieldName": "user_identifiers", "index": j}]
        fields = [k for k in SNAKE if isinstance(ident, dict) and k in ident]
        if len(fields) != 1:
            raise AdsError(
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                "Each user identifier has exactly one of hashedEmail, hashedPhoneNumber, addressInfo, thirdPartyUserId or mobileId.",
                here,
            )
        name = fields[0]
        value = ident[name]
        here = [*here, {"fieldName": SNAKE[name]}]
        if name not in KEY_FIELDS[job.user_list.upload_key_type]:
            raise AdsError(
                "offlineUserDataJobError",
                "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                "Upload data is not compatible with the upload key type of the associated user list.",
                here,
            )
        if name == "addressInfo":
            text = self._address(value, here)
        elif name == "mobileId":
            if not (isinstance(value, str) and MOBILE_ID.fullmatch(value)):
                raise AdsError(
                    "offlineUserDataJobError",
                    "INVALID_MOBILE_ID_FORMAT",
                    "The mobile ID is malformed.",
                    here,
                )
            text = value
        elif name == "thirdPartyUserId":
            if not isinstance(value, str) or not value:
                raise AdsError(
                    "offlineUserDataJobError",
                    "MISSING_USER_IDENTIFIER",
                    "The user identifier is missing valid data.",
                    here,
                )
            text = value
        else:
            if hash_problem(value, lowercase_only=self.lowercase_hashes_only) is not None:
                raise AdsError(
                    "offlineUserDataJobError",
                    "INVALID_SHA256_FORMAT",
                    "The SHA256 encoded value is malformed.",
                    here,
                )
            text = value
        if text in self.rejects:
            raise AdsError("offlineUserDataJobError", "UNKNOWN", self.rejects[text], here)
        return name, text

    def _address(self, value: Any, at: list[dict[str, Any]]) -> str:
        if not isinstance(value, dict):
            raise AdsError(
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                "addressInfo must be an object.",
                at,
            )
        missing = [k for k in ADDRESS if not value.get(k)]
        if missing and self.require_full_address:
            raise AdsError(
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                f"addressInfo needs {', '.join(missing)}.",
                at,
            )
        for key in ("hashedFirstName", "hashedLastName"):
            if value.get(key) and hash_problem(
                value[key], lowercase_only=self.lowercase_hashes_only
            ):
                raise AdsError(
                    "offlineUserDataJobError",
                    "INVALID_SHA256_FORMAT",
                    "The SHA256 encoded value is malformed.",
                    [*at, {"fieldName": key}],
                )
        country = value.get("countryCode")
        if country is not None and not (
            isinstance(country, str) and re.fullmatch(r"[A-Za-z]{2}", country)
        ):
            raise AdsError(
                "offlineUserDataJobError",
                "INVALID_COUNTRY_CODE",
                "The country code is invalid.",
                [*at, {"fieldName": "country_code"}],
            )
        return ",".join(f"{k}={value.get(k, '')}" for k in ADDRESS)
