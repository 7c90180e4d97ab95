"""Centrifugo's channel permissions, from a config file's namespaces, as an authorize
hook (`NamespacePolicy`; docs/centrifuge.md "A Centrifugo config file").

A channel ``ns:rest`` belongs to namespace ``ns``; one without ``:`` to
``without_namespace``. A channel of a namespace the file does not define is refused
(Centrifugo answers 102, unknown channel). The API key may do anything. Otherwise:

* subscribe: ``allow_subscribe_for_client``, and for an anonymous connection also
  ``allow_subscribe_for_anonymous``. (A subscription token never reaches the hook.)
* publish / history / presence: ``allow_<action>_for_client``; or
  ``allow_<action>_for_subscriber`` and the connection may subscribe by the rule above.
  The hook does not see the connection's subscriptions, so "subscriber" is read as
  "may subscribe": the same for anyone who can subscribe at will, stricter for a
  channel only a subscription token opens.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..centrifugo_config import ChannelOptions
from .permissions import Action
from .principal import Principal


class NamespacePolicy:
    """An `AuthorizeHook` over the config's `ChannelOptions` (see the module docstring)."""

    __slots__ = ("_namespaces",)

    def __init__(self, options: Iterable[ChannelOptions]) -> None:
        self._namespaces = {o.name: o for o in options}

    def options(self, topic: str) -> ChannelOptions | None:
        """The options of `topic`'s namespace, None when the file defines none."""
        name, sep, _ = topic.partition(":")
        return self._namespaces.get(name if sep else "")

    def __call__(self, principal: Principal, action: Action, topic: str) -> bool:
        found = self.options(topic)
        if found is None:
            return False
        if principal.is_api_key:
            return True
        may_subscribe = found.allow_subscribe_for_client and (
            principal.user is not None or found.allow_subscribe_for_anonymous)
        if action is Action.SUBSCRIBE:
            return may_subscribe
        if action is Action.PUBLISH:
            client, subscriber = (found.allow_publish_for_client,
                                  found.allow_publish_for_subscriber)
        elif action is Action.HISTORY:
            client, subscriber = (found.allow_history_for_client,
                                  found.allow_history_for_subscriber)
        else:
            client, subscriber = (found.allow_presence_for_client,
                                  found.allow_presence_for_subscriber)
        return client or (subscriber and may_subscribe)
