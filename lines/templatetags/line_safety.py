"""The dashboard banner for lines out of rotation (quarantined or down)."""

from django import template

from lines import safety

register = template.Library()


@register.inclusion_tag("lines/_banner.html", takes_context=True)
def lines_out_of_rotation(context):
    request = context.get("request")
    workspace = getattr(request, "workspace", None)
    if workspace is None:
        return {"lines": []}
    return {"lines": safety.lines_out_of_rotation(workspace_id=workspace.pk)}
