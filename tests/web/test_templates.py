"""Links in templates come from {% url %}, so a moved route cannot leave one dangling."""

import re
from pathlib import Path

from django.conf import settings

HARD_CODED = re.compile(r'(?:href|action|hx-get|hx-post)="/(?!static/)[^"{]*"')


def test_templates_build_their_links_with_the_url_tag():
    root = Path(settings.BASE_DIR) / "templates"
    assert len(list(root.rglob("*.html"))) > 20
    found = [
        f"{path.relative_to(root)}: {match.group(0)}"
        for path in sorted(root.rglob("*.html"))
        for match in HARD_CODED.finditer(path.read_text())
    ]
    assert found == []
