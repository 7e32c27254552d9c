from django import template

from servers.models import Server

register = template.Library()


@register.filter
def allows(server: Server, action: str) -> bool:
    return server.allows(action)
