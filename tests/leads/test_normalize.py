import pytest

from leads.normalize import (
    InvalidIdentifier,
    Normalizer,
    normalize_email,
    normalize_phone,
    region_for,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+12025551234", "US", "+12025551234"),
        ("(202) 555-1234", "US", "+12025551234"),
        ("202.555.1234", "US", "+12025551234"),
        ("202-555-1234", "US", "+12025551234"),
        ("2025551234", "US", "+12025551234"),
        ("1-202-555-1234", "US", "+12025551234"),
        ("1 (202) 555-1234", "US", "+12025551234"),
        ("  +1 202 555 1234 ", "US", "+12025551234"),
        ("+1 (416) 555-0123", "US", "+14165550123"),
        ("(416) 555-0123", "CA", "+14165550123"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("+39 06 1234 5678", "US", "+390612345678"),
        ("+86 138 0013 8000", "US", "+8613800138000"),
        ("+61 412 345 678", None, "+61412345678"),
        ("+12025551234", None, "+12025551234"),
    ],
)
def test_it_normalizes_common_formats_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("", "US"),
        ("   ", "US"),
        ("12345", "US"),
        ("abc", "US"),
        ("+1 555 555 1234", "US"),  # 555 is not an area code
        ("(202) 555-1234", "GB"),  # not a UK number
        ("(202) 555-1234", None),  # no country code and no default
        ("202555123499999", "US"),
        ("+999 1234 5678", "US"),
    ],
)
def test_it_rejects_invalid_phones(raw, region):
    with pytest.raises(InvalidIdentifier, match="Invalid phone number"):
        normalize_phone(raw, region)


def test_it_rejects_non_strings():
    with pytest.raises(InvalidIdentifier):
        normalize_phone(None, "US")
    with pytest.raises(InvalidIdentifier):
        normalize_email(42)


@pytest.mark.parametrize(
    ("value", "region"),
    [("+1", "US"), ("1", "US"), ("+44", "GB"), ("44", "GB"), ("0044", "GB"), ("GB", "GB")],
)
def test_default_country_code_maps_to_a_region(value, region):
    assert region_for(value) == region


@pytest.mark.parametrize("value", ["+999", "abc", "+", "ZZ"])
def test_it_rejects_unknown_country_codes(value):
    with pytest.raises(InvalidIdentifier):
        region_for(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" John@Example.COM ", "john@example.com"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("o'neil@example.io", "o'neil@example.io"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ],
)
def test_it_normalizes_emails(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "bad@",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@localhost",
        "a@b.c",
        "a b@example.com",
        "a@exa mple.com",
        "a@-example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_it_rejects_invalid_emails(raw):
    with pytest.raises(InvalidIdentifier, match="Invalid email address"):
        normalize_email(raw)


def test_normalizer_remembers_results_and_failures():
    normalizer = Normalizer("+1")
    assert normalizer.phone("(202) 555-1234") == "+12025551234"
    assert normalizer.phone("(202) 555-1234") == "+12025551234"
    for _ in range(2):
        with pytest.raises(InvalidIdentifier):
            normalizer.phone("12345")


def test_north_american_shortcut_agrees_with_the_library():
    import random

    import phonenumbers

    rng = random.Random(7)
    for _ in range(3000):
        national = f"{rng.randint(200, 999)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        expected = phonenumbers.is_valid_number(phonenumbers.parse("+1" + national))
        try:
            normalize_phone(national, "US")
            valid = True
        except InvalidIdentifier:
            valid = False
        assert valid == expected, national


def test_main_region_validity_agrees_with_the_library():
    """The per-length union of type patterns answers is_valid_number_for_region
    exactly, for every calling code: random national numbers, and example
    numbers of each type with a few digits changed (mostly valid or nearly)."""
    import random

    import phonenumbers
    from phonenumbers import PhoneNumber

    from leads.normalize import _is_valid, _valid_for_main_region

    rng = random.Random(11)
    numbers = []
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for _ in range(40):
            length = rng.randint(2, 15)
            number = PhoneNumber(
                country_code=code, national_number=rng.randint(10 ** (length - 1), 10**length - 1)
            )
            if rng.random() < 0.1:
                number.italian_leading_zero = True
            numbers.append(number)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            numbers.append(example)
            digits = str(example.national_number)
            for _ in range(4):
                changed = list(digits)
                changed[rng.randrange(len(changed))] = str(rng.randint(0, 9))
                number = PhoneNumber(
                    country_code=example.country_code, national_number=int("".join(changed))
                )
                number.italian_leading_zero = example.italian_leading_zero
                numbers.append(number)
    for number in numbers:
        main = phonenumbers.region_code_for_country_code(number.country_code)
        assert _valid_for_main_region(number) == phonenumbers.is_valid_number_for_region(
            number, main
        ), number
        assert _is_valid(number) == phonenumbers.is_valid_number(number), number


def _library_e164(raw, region):
    """What phonenumbers alone makes of a number: E.164 when valid, else None."""
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_international_shortcut_agrees_with_the_library():
    """ "+<country code><national number>" skips parsing; for every calling code,
    example numbers of each type (as written internationally, with a national
    prefix or a zero in front, with a digit changed) and random digits must come
    out as the library's own parse and validity check say."""
    import random

    import phonenumbers

    rng = random.Random(13)
    raws = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefix = (metadata.national_prefix or "") if metadata else ""
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            code = example.country_code
            national = phonenumbers.national_significant_number(example)
            raws.append(phonenumbers.format_number(example, 1))  # INTERNATIONAL, spaced
            raws += [f"+{code}{national}", f"+{code}0{national}", f"+{code} ({prefix}) {national}"]
            raws.append(f"+{code}{prefix}{national}")
            for _ in range(3):
                digits = list(national)
                digits[rng.randrange(len(digits))] = str(rng.randint(0, 9))
                raws.append(f"+{code}{''.join(digits)}")
            raws.append(f"+{code}{national[:-1]}")
            raws.append(f"+{code}{national}{rng.randint(0, 9)}")
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for _ in range(30):
            length = rng.randint(1, 14)
            raws.append(f"+{code}{rng.randint(10 ** (length - 1), 10**length - 1)}")
    for _ in range(500):
        raws.append(f"+{rng.randint(1, 10**15)}")
    for raw in raws:
        for region in ("US", "GB", None):
            expected = _library_e164(raw, region)
            try:
                got = normalize_phone(raw, region)
            except InvalidIdentifier:
                got = None
            assert got == expected, (raw, region)
