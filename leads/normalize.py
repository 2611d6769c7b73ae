"""Normalization of lead identifiers: phones to E.164, emails trimmed and lowercased.

Imports normalize hundreds of thousands of numbers, so the common shapes take a
short path: a North American number written with the usual separators, or any
number written as +<country code><national number>, is turned into a
PhoneNumber directly (parsing is most of the cost) and still goes through the
library's validity rules; everything else, and anything the short path is not
sure of, goes through `phonenumbers.parse`. Validity for the main region of a calling code is the
library's own patterns, compiled into one expression per number length. A
`Normalizer` keeps the results of one import, so a number that repeats is
normalized once.
"""

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumber
from phonenumbers.phonemetadata import PhoneMetadata

PHONE_ERROR = "Invalid phone number"
EMAIL_ERROR = "Invalid email address"

# Separators people put in phone numbers; removed before the short path looks at the digits.
_SEPARATORS = str.maketrans("", "", " ()-./\u00a0\t")
_NANP_NATIONAL = re.compile(r"[2-9]\d{2}[2-9]\d{6}")
_DIGITS = re.compile(r"\+?\d+")
# North American numbers are allocated by area code and exchange (the first six
# digits), and the library's patterns for them decide validity on those digits
# alone, except in these areas, which are split further. Remembering the answer
# per exchange turns most validity checks of a large import into a dict lookup.
_NANP_SEVEN_DIGIT_AREAS = frozenset({"246", "658", "876"})
_nanp_prefix_valid: dict[str, bool] = {}

# Practical address syntax (RFC 5321 dot-atom local part, LDH domain labels, a TLD).
_EMAIL = re.compile(
    r"(?![.])[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
)
MAX_EMAIL_LENGTH = 254
CACHE_SIZE = 50_000


class InvalidIdentifier(ValueError):
    """A phone or email that cannot be normalized; the message is safe to show."""


@lru_cache(maxsize=256)
def region_for(default_country_code: str | None) -> str | None:
    """Region code ("US") for a default like "+1", "1", "+44" or a region code itself.

    Raises InvalidIdentifier for a value that names no country.
    """
    if default_country_code is None:
        return None
    value = str(default_country_code).strip()
    if not value:
        return None
    if value.isalpha() and len(value) == 2:
        region = value.upper()
        if region in phonenumbers.SUPPORTED_REGIONS:
            return region
        raise InvalidIdentifier(f"Unknown country code {default_country_code!r}")
    digits = value.removeprefix("+").removeprefix("00")
    if digits.isdigit():
        region = phonenumbers.region_code_for_country_code(int(digits))
        if region != phonenumbers.UNKNOWN_REGION:
            return region
    raise InvalidIdentifier(f"Unknown country code {default_country_code!r}")


def _e164(number: PhoneNumber) -> str:
    national = str(number.national_number)
    if number.italian_leading_zero:
        national = "0" * (number.number_of_leading_zeros or 1) + national
    return f"+{number.country_code}{national}"


def default_region() -> str | None:
    """The region of the LEADS_DEFAULT_COUNTRY_CODE setting ("+1" -> "US"): how a
    phone without a country code is read wherever the app meets one."""
    from django.conf import settings

    return region_for(getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1"))


def normalize_phone(value, region: str | None = None) -> str:
    """E.164 for a phone written in any common format; `region` applies when the
    number carries no country code. Raises InvalidIdentifier."""
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        else:
            raise InvalidIdentifier(PHONE_ERROR)
    text = value.strip()
    if not text:
        raise InvalidIdentifier(PHONE_ERROR)
    compact = text.translate(_SEPARATORS)
    if compact.startswith("00") and compact[2:].isdigit():
        # International prefix used in most of the world; the library only knows
        # it when the default region dials that way.
        compact = "+" + compact[2:]
        text = compact
    number = None
    if _DIGITS.fullmatch(compact):
        national = None
        if compact.startswith("+1") and len(compact) == 12:
            national = compact[2:]
        elif region is not None and _NANP_REGION[region]:
            if len(compact) == 10:
                national = compact
            elif len(compact) == 11 and compact[0] == "1":
                national = compact[1:]
        if national is not None and _NANP_NATIONAL.fullmatch(national):
            if national[:3] not in _NANP_SEVEN_DIGIT_AREAS:
                valid = _nanp_prefix_valid.get(national[:6])
                if valid is None:
                    valid = _is_valid(PhoneNumber(country_code=1, national_number=int(national)))
                    if len(_nanp_prefix_valid) >= CACHE_SIZE * 4:
                        _nanp_prefix_valid.clear()
                    _nanp_prefix_valid[national[:6]] = valid
                if not valid:
                    raise InvalidIdentifier(PHONE_ERROR)
                return "+1" + national
            number = PhoneNumber(country_code=1, national_number=int(national))
        elif compact[0] == "+":
            number = _international(compact)
            if number is not None:
                if _is_valid(number):
                    return _e164(number)
                number = None  # let the library have its say
    if number is None:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidIdentifier(PHONE_ERROR) from exc
    if not _is_valid(number):
        raise InvalidIdentifier(PHONE_ERROR)
    return _e164(number)


def _international(compact: str) -> PhoneNumber | None:
    """The number phonenumbers.parse reads from "+<digits>", or None where parsing
    may read it differently: the country code is the shortest prefix that is
    one, as the library takes it; a national number that starts with a zero or
    with the region's national prefix (which the library may strip) is left to
    the library."""
    digits = compact[1:]
    if not digits.isascii() or len(digits) < 4 or digits[0] == "0":
        return None
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in _COUNTRY_CODES:
            break
    else:
        return None
    national = digits[size:]
    if national[0] == "0":
        return None
    prefix = _NATIONAL_PREFIX[code]
    if prefix is None or prefix.match(national):
        return None
    return PhoneNumber(country_code=code, national_number=int(national))


_COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


class _NationalPrefixes(dict):
    """Calling code -> the pattern parse strips as a national prefix (a pattern that
    never matches when the region has none), or None for codes without metadata."""

    def __missing__(self, code):
        region = phonenumbers.region_code_for_country_code(code)
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        if metadata is None:
            pattern = None
        else:
            pattern = re.compile(metadata.national_prefix_for_parsing or r"(?!)")
        self[code] = pattern
        return pattern


_NATIONAL_PREFIX = _NationalPrefixes()


def _is_valid(number: PhoneNumber) -> bool:
    # is_valid_number first finds the number's region by testing each region of the
    # calling code in turn (about 25 for +1), then validates for it. The main region
    # comes first in that search, so a number valid there gives the same answer at
    # a fraction of the cost; only the rest take the full search.
    if _valid_for_main_region(number):
        return True
    return phonenumbers.is_valid_number(number)


# The number types is_valid_number_for_region tries, in the library's order. A
# number is valid for a region when it matches the region's general pattern and
# the pattern of any one type; mobile counts only when its pattern differs from
# the fixed-line one (the library checks it after fixed line only in that case).
_TYPE_DESCS = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
    "pager", "uan", "voicemail", "fixed_line",
)  # fmt: skip


def _desc_applies(desc, length: int) -> bool:
    # As the library's _is_number_matching_desc: no pattern never matches, and
    # listed possible lengths are checked before the pattern.
    if desc is None or not desc.national_number_pattern:
        return False
    return not desc.possible_length or length in desc.possible_length


class _RegionMatcher:
    """is_valid_number_for_region for one region, as one regular expression per
    number length: the union of the type patterns that apply to that length,
    compiled once, instead of up to ten patterns tried one after another."""

    def __init__(self, metadata):
        self.metadata = metadata
        descs = [getattr(metadata, name) for name in _TYPE_DESCS]
        if not metadata.same_mobile_and_fixed_line_pattern:
            descs.append(metadata.mobile)
        self.descs = descs
        self.by_length: dict[int, re.Pattern | None] = {}

    def _compile(self, length: int):
        general = self.metadata.general_desc
        patterns = [d.national_number_pattern for d in self.descs if _desc_applies(d, length)]
        if not _desc_applies(general, length) or not patterns:
            return None
        general_re = re.compile(general.national_number_pattern)
        types_re = re.compile("|".join(f"(?:{p})" for p in patterns))
        return general_re, types_re

    def valid(self, national: str) -> bool:
        length = len(national)
        try:
            compiled = self.by_length[length]
        except KeyError:
            compiled = self.by_length[length] = self._compile(length)
        if compiled is None:
            return False
        general_re, types_re = compiled
        return bool(general_re.fullmatch(national) and types_re.fullmatch(national))


def _main_region_matcher(country_code: int) -> _RegionMatcher | None:
    region = phonenumbers.region_code_for_country_code(country_code)
    if region == phonenumbers.UNKNOWN_REGION:
        return None
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    return None if metadata is None else _RegionMatcher(metadata)


class _MainRegionMatchers(dict):
    def __missing__(self, country_code):
        self[country_code] = matcher = _main_region_matcher(country_code)
        return matcher


_MAIN_REGION = _MainRegionMatchers()


def _valid_for_main_region(number: PhoneNumber) -> bool:
    """phonenumbers.is_valid_number_for_region(number, main region of its code)."""
    matcher = _MAIN_REGION[number.country_code]
    if matcher is None:
        return False
    return matcher.valid(phonenumbers.national_significant_number(number))


def _is_nanp(region: str) -> bool:
    return phonenumbers.country_code_for_region(region) == 1


class _NanpRegions(dict):
    def __missing__(self, region):
        self[region] = result = _is_nanp(region)
        return result


_NANP_REGION = _NanpRegions()


def normalize_email(value) -> str:
    """Trimmed, lowercased, syntactically valid address. Raises InvalidIdentifier."""
    if not isinstance(value, str):
        raise InvalidIdentifier(EMAIL_ERROR)
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidIdentifier(EMAIL_ERROR)
    local = email.split("@", 1)[0]
    if len(local) > 64 or ".." in local or local.endswith("."):
        raise InvalidIdentifier(EMAIL_ERROR)
    return email


class Normalizer:
    """Normalizes for one import, remembering results so repeated values cost nothing."""

    def __init__(self, default_country_code: str | None = None):
        self.region = region_for(default_country_code)
        self._phones: dict[str, str | None] = {}

    def phone(self, value) -> str:
        if isinstance(value, str):
            cached = self._phones.get(value, False)
            if cached is None:
                raise InvalidIdentifier(PHONE_ERROR)
            if cached is not False:
                return cached
            try:
                result = normalize_phone(value, self.region)
            except InvalidIdentifier:
                self._phones[value] = None
                raise
            if len(self._phones) >= CACHE_SIZE:
                self._phones.clear()  # bounded, so memory stays flat on huge imports
            self._phones[value] = result
            return result
        return normalize_phone(value, self.region)

    @staticmethod
    def email(value) -> str:
        return normalize_email(value)
