"""Personal data normalised and SHA-256 hashed the way ad platforms match it.

Meta Custom Audiences and Google Ads Customer Match match people by hashes of their
e-mail, phone, name and address. A hash only matches when the text hashed is exactly what
the platform hashed on its side, so each value is first normalised by the platform's rules
(e-mail trimmed and lower-cased; Meta's phone is digits with the country code, Google's is
E.164 with the ``+``; Meta's names keep letters only, ...), then hashed to lower-case hex.

A value that already is a SHA-256 digest (64 hex characters) is passed through lower-cased,
so pre-hashed warehouse columns work. A value that cannot be normalised raises
:class:`PiiError` with the key and a reason that never repeats the value itself; the row
becomes invalid with that reason and the others go on.

Example:
    >>> prepare(Platform.META, PiiKey.PHONE, "+1 (650) 555-1234").value[:12]
    '6069d14bf122'
    >>> prepare(Platform.GOOGLE, PiiKey.PHONE, "+1 (650) 555-1234").value[:12]
    'a2996076d3ad'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import phonenumbers

Raw = str | int | dt.date


class Platform(StrEnum):
    """An ad platform whose normalisation rules apply."""

    META = "meta"
    GOOGLE = "google"


class PiiKey(StrEnum):
    """A kind of personal value an audience is matched on."""

    EMAIL = "email"
    PHONE = "phone"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    FIRST_INITIAL = "first_initial"
    CITY = "city"
    STATE = "state"
    ZIP = "zip"
    COUNTRY = "country"
    BIRTH_YEAR = "birth_year"
    BIRTH_MONTH = "birth_month"
    BIRTH_DAY = "birth_day"
    GENDER = "gender"
    EXTERNAL_ID = "external_id"
    MOBILE_ID = "mobile_id"


#: Meta's ``payload.schema`` name of each key.
META_SCHEMA: Mapping[PiiKey, str] = MappingProxyType(
    {
        PiiKey.EMAIL: "EMAIL",
        PiiKey.PHONE: "PHONE",
        PiiKey.FIRST_NAME: "FN",
        PiiKey.LAST_NAME: "LN",
        PiiKey.FIRST_INITIAL: "FI",
        PiiKey.CITY: "CT",
        PiiKey.STATE: "ST",
        PiiKey.ZIP: "ZIP",
        PiiKey.COUNTRY: "COUNTRY",
        PiiKey.BIRTH_YEAR: "DOBY",
        PiiKey.BIRTH_MONTH: "DOBM",
        PiiKey.BIRTH_DAY: "DOBD",
        PiiKey.GENDER: "GEN",
        PiiKey.EXTERNAL_ID: "EXTERN_ID",
        PiiKey.MOBILE_ID: "MADID",
    }
)

#: Google Customer Match's field of each key it accepts.
GOOGLE_FIELDS: Mapping[PiiKey, str] = MappingProxyType(
    {
        PiiKey.EMAIL: "hashedEmail",
        PiiKey.PHONE: "hashedPhoneNumber",
        PiiKey.FIRST_NAME: "addressInfo.hashedFirstName",
        PiiKey.LAST_NAME: "addressInfo.hashedLastName",
        PiiKey.COUNTRY: "addressInfo.countryCode",
        PiiKey.ZIP: "addressInfo.postalCode",
        PiiKey.EXTERNAL_ID: "thirdPartyUserId",
        PiiKey.MOBILE_ID: "mobileId",
    }
)

# Keys sent as they are (normalised, never hashed), per platform.
_UNHASHED: Mapping[Platform, frozenset[PiiKey]] = MappingProxyType(
    {
        Platform.META: frozenset({PiiKey.EXTERNAL_ID, PiiKey.MOBILE_ID}),
        Platform.GOOGLE: frozenset(
            {PiiKey.COUNTRY, PiiKey.ZIP, PiiKey.EXTERNAL_ID, PiiKey.MOBILE_ID}
        ),
    }
)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MOBILE_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_BY_COUNTRY = frozenset({PiiKey.PHONE, PiiKey.ZIP})
_US_ZIP4 = re.compile(r"\d{5}-\d{4}")
_GMAIL = ("gmail.com", "googlemail.com")


class PiiError(ValueError):
    """A value that cannot be normalised; the reason never contains the value."""

    def __init__(self, key: PiiKey, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class PiiOptions:
    """Choices the platforms leave to the sender.

    Attributes:
        default_country: ISO 3166-1 alpha-2 code assumed for phone numbers written without
            their country code (and for US ZIP codes) when the row has no country.
        gmail_dots: Also remove the dots of the local part of ``gmail.com`` and
            ``googlemail.com`` addresses (Google only). Google documents this for enhanced
            conversions, not for Customer Match, so it is off by default.
    """

    default_country: str | None = None
    gmail_dots: bool = False


@dataclass(frozen=True)
class PiiValue:
    """A value ready to send.

    Attributes:
        key: What the value is.
        value: A lower-case SHA-256 hex digest, or the normalised text of a key the platform
            takes unhashed.
        hashed: Whether ``value`` is a digest.
        prehashed: Whether the input already was a digest (passed through).
    """

    key: PiiKey
    value: str
    hashed: bool
    prehashed: bool = False


def sha256_hex(text: str) -> str:
    """The SHA-256 digest of ``text`` (UTF-8) as lower-case hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` looks like a SHA-256 hex digest (64 hex characters, any case)."""
    return _SHA256.fullmatch(text) is not None


def is_hashed(platform: Platform, key: PiiKey) -> bool:
    """Whether ``platform`` takes ``key`` as a SHA-256 digest."""
    return key not in _UNHASHED[platform]


def supports(platform: Platform, key: PiiKey) -> bool:
    """Whether ``platform`` matches on ``key`` at all."""
    return key in (META_SCHEMA if platform is Platform.META else GOOGLE_FIELDS)


def normalise(
    platform: Platform,
    key: PiiKey,
    value: Raw,
    *,
    country: str | None = None,
    options: PiiOptions | None = None,
) -> str:
    """The text ``platform`` hashes (or takes as it is) for ``value``.

    Args:
        platform: Whose rules apply.
        key: What the value is.
        value: The raw value (text, a number, or a date for the birth keys).
        country: The row's country (ISO alpha-2), for phones and ZIP codes.
        options: Sender choices; ``options.default_country`` applies when ``country`` is
            not given.

    Raises:
        PiiError: The platform does not match on ``key``, or the value cannot be normalised.
    """
    opts = options or PiiOptions()
    if not supports(platform, key):
        raise PiiError(key, f"{platform} does not match audiences on this key")
    # Only phone numbers and ZIP codes depend on the country.
    region = _region(country or opts.default_country, key) if key in _BY_COUNTRY else None
    return _RULES[key](platform, _text(key, value), value, region, opts)


def prepare(
    platform: Platform,
    key: PiiKey,
    value: Raw,
    *,
    country: str | None = None,
    options: PiiOptions | None = None,
) -> PiiValue:
    """Normalise and hash ``value`` for ``platform``; pass a SHA-256 digest through.

    Raises:
        PiiError: As :func:`normalise`.
    """
    if not supports(platform, key):
        raise PiiError(key, f"{platform} does not match audiences on this key")
    if not is_hashed(platform, key):
        return PiiValue(
            key, normalise(platform, key, value, country=country, options=options), False
        )
    if isinstance(value, str) and is_sha256_hex(value.strip()):
        return PiiValue(key, value.strip().lower(), True, prehashed=True)
    text = normalise(platform, key, value, country=country, options=options)
    return PiiValue(key, sha256_hex(text), True)


def prepare_row(
    platform: Platform,
    values: Mapping[PiiKey, Raw | None],
    options: PiiOptions | None = None,
) -> tuple[dict[PiiKey, PiiValue], list[PiiError]]:
    """Prepare every non-empty value of one row; the row's own country applies to its phone.

    Returns:
        The prepared values by key, and one error per value that could not be prepared.
    """
    country_raw = values.get(PiiKey.COUNTRY)
    country: str | None = None
    if isinstance(country_raw, str) and not is_sha256_hex(country_raw.strip()):
        country = country_raw.strip() or None
    out: dict[PiiKey, PiiValue] = {}
    errors: list[PiiError] = []
    for key, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            out[key] = prepare(platform, key, value, country=country, options=options)
        except PiiError as exc:
            errors.append(exc)
    return out, errors


# -- rules, one per key ----------------------------------------------------------------------

Rule = Callable[[Platform, str, Raw, "str | None", PiiOptions], str]


def _text(key: PiiKey, value: Raw) -> str:
    if isinstance(value, bool):
        raise PiiError(key, "is a boolean, not text")
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise PiiError(key, "is empty")
    return text


def _region(country: str | None, key: PiiKey) -> str | None:
    if country is None or not country.strip():
        return None
    code = country.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise PiiError(key, "the country must be an ISO 3166-1 alpha-2 code such as US or GB")
    return code


def _letters(text: str) -> str:
    """Lower-case letters (any script, with their combining marks) and nothing else."""
    lowered = unicodedata.normalize("NFC", text.lower())
    return "".join(c for c in lowered if unicodedata.category(c)[0] in "LM")


def _email(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    email = text.lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise PiiError(PiiKey.EMAIL, "is not an e-mail address (expected name@domain.tld)")
    if platform is Platform.GOOGLE and o.gmail_dots and domain in _GMAIL:
        email = local.replace(".", "") + "@" + domain
    return email


def _phone(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    number = _parse_phone(text, region)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Meta hashes the digits with the country code but without the "+"; Google keeps it.
    return e164 if platform is Platform.GOOGLE else e164.lstrip("+")


def _parse_phone(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    digits = re.sub(r"\D", "", text)
    if not digits:
        raise PiiError(PiiKey.PHONE, "has no digits")
    hint = "; write it with its country code or set a default country"
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+") or digits.startswith("00"):  # "00" is the international prefix
        candidates.append(("+" + digits.lstrip("0"), None))
        hint = ""
    else:
        if region is not None:
            candidates.append((text, region))
            hint = ""
        if not digits.startswith("0"):  # a leading 0 is a national trunk prefix, not a code
            # Meta's rule: a number written without "+" starts with its country code.
            candidates.append(("+" + digits, None))
    for candidate, where in candidates:
        try:
            number = phonenumbers.parse(candidate, where)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number) and _stable(number):
            return number
    raise PiiError(PiiKey.PHONE, "is not a possible phone number" + hint)


def _stable(number: phonenumbers.PhoneNumber) -> bool:
    """Whether the E.164 form reads back as itself (not so for e.g. "+49 0..." with a trunk 0)."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    again = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) == e164


def _name(key: PiiKey) -> Rule:
    def rule(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
        if platform is Platform.GOOGLE:
            return text.lower()  # Google: trimmed and lower-cased, nothing removed
        letters = _letters(text)
        if not letters:
            raise PiiError(key, "has no letters")
        return letters

    return rule


def _first_initial(
    platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions
) -> str:
    letters = _letters(text)
    starts = [i for i, c in enumerate(letters) if unicodedata.category(c)[0] == "L"]
    if not starts:
        raise PiiError(PiiKey.FIRST_INITIAL, "has no letters")
    end = starts[0] + 1  # the first letter with the combining marks that belong to it
    while end < len(letters) and unicodedata.category(letters[end])[0] == "M":
        end += 1
    return letters[starts[0] : end]


def _place(key: PiiKey) -> Rule:
    def rule(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
        letters = _letters(text)
        if not letters:
            raise PiiError(key, "has no letters")
        return letters

    return rule


def _zip(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    if platform is Platform.GOOGLE:
        return text  # sent unhashed, as written
    compact = re.sub(r"[\s-]", "", text.lower())
    if region == "US" or _US_ZIP4.fullmatch(text):
        if not re.match(r"\d{5}", compact):
            raise PiiError(PiiKey.ZIP, "is not a US ZIP code (expected five digits)")
        return compact[:5]
    if not compact:
        raise PiiError(PiiKey.ZIP, "is empty")
    return compact


def _country(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    code = _region(text, PiiKey.COUNTRY)
    assert code is not None  # text is not empty
    return code if platform is Platform.GOOGLE else code.lower()


def _date_part(key: PiiKey, raw: Raw, text: str) -> int:
    if isinstance(raw, dt.date):
        return {PiiKey.BIRTH_YEAR: raw.year, PiiKey.BIRTH_MONTH: raw.month}.get(key, raw.day)
    try:
        return int(text)
    except ValueError:
        raise PiiError(key, "is not a number") from None


def _birth_year(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    year = _date_part(PiiKey.BIRTH_YEAR, raw, text)
    if not 1000 <= year <= 9999:
        raise PiiError(PiiKey.BIRTH_YEAR, "must be a four-digit year")
    return f"{year:04d}"


def _birth_month(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    month = _date_part(PiiKey.BIRTH_MONTH, raw, text)
    if not 1 <= month <= 12:
        raise PiiError(PiiKey.BIRTH_MONTH, "must be a month from 1 to 12")
    return f"{month:02d}"


def _birth_day(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    day = _date_part(PiiKey.BIRTH_DAY, raw, text)
    if not 1 <= day <= 31:
        raise PiiError(PiiKey.BIRTH_DAY, "must be a day from 1 to 31")
    return f"{day:02d}"


def _gender(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    word = text.lower()
    if word in ("m", "male"):
        return "m"
    if word in ("f", "female"):
        return "f"
    raise PiiError(PiiKey.GENDER, "must be m, f, male or female")


def _external_id(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    return text  # sent as it is: it is the advertiser's own identifier


def _mobile_id(platform: Platform, text: str, raw: Raw, region: str | None, o: PiiOptions) -> str:
    if not _MOBILE_ID.fullmatch(text):
        raise PiiError(PiiKey.MOBILE_ID, "is not a mobile advertising id (IDFA or AAID)")
    return text.lower() if platform is Platform.META else text


_RULES: Mapping[PiiKey, Rule] = MappingProxyType(
    {
        PiiKey.EMAIL: _email,
        PiiKey.PHONE: _phone,
        PiiKey.FIRST_NAME: _name(PiiKey.FIRST_NAME),
        PiiKey.LAST_NAME: _name(PiiKey.LAST_NAME),
        PiiKey.FIRST_INITIAL: _first_initial,
        PiiKey.CITY: _place(PiiKey.CITY),
        PiiKey.STATE: _place(PiiKey.STATE),
        PiiKey.ZIP: _zip,
        PiiKey.COUNTRY: _country,
        PiiKey.BIRTH_YEAR: _birth_year,
        PiiKey.BIRTH_MONTH: _birth_month,
        PiiKey.BIRTH_DAY: _birth_day,
        PiiKey.GENDER: _gender,
        PiiKey.EXTERNAL_ID: _external_id,
        PiiKey.MOBILE_ID: _mobile_id,
    }
)

__all__ = [
    "GOOGLE_FIELDS",
    "META_SCHEMA",
    "PiiError",
    "PiiKey",
    "PiiOptions",
    "PiiValue",
    "Platform",
    "is_hashed",
    "is_sha256_hex",
    "normalise",
    "prepare",
    "prepare_row",
    "sha256_hex",
    "supports",
]
