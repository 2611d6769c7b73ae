"""Sections other apps add to the Settings page, without tuco knowing those apps.

An app registers its sections in its AppConfig.ready(); their views and URLs live in
the app. The Settings page renders each section's template (included in the page,
so it sees the whole page context) after tuco's own sections, in the order
registered.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest


@dataclass(frozen=True)
class SettingsSection:
    # Included in the Settings page.
    template: str
    # (request, **forms) -> the context the template needs. `forms` holds what the
    # page was rendered with: a bound form with its errors after a failed POST
    # (keyed by the name the template uses), or what `shown_once` returned.
    context: Callable[..., dict]
    # (request) -> context to show on the next GET of the page only, popped from the
    # session (a secret made by a POST that redirected to the page).
    shown_once: Callable[[HttpRequest], dict] | None = None


_sections: dict[str, SettingsSection] = {}


def settings_section_register(section: SettingsSection) -> None:
    """Add `section` to the Settings page (again: replaces the one with its template)."""
    _sections[section.template] = section


def settings_sections() -> list[SettingsSection]:
    return list(_sections.values())
