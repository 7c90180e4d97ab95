"""Centrifugo's channel options, from a config file's namespaces (`NamespacePolicy`;
docs/centrifuge.md "A Centrifugo config file"), read as Centrifugo's client handler
reads them. With ``client.insecure`` every action on a known channel is allowed.

A channel ``ns:rest`` belongs to namespace ``ns``; one without ``:`` to
``without_namespace``. Before any permission (`refusal`): a channel of a namespace the
file does not define is unknown (Centrifugo's 102), presence in a namespace without
``presence`` and history in one without ``history_size``/``history_ttl`` are not
available (108). Then the permissions (`__call__`, asked by `Authorizer.check`); the API
key may do anything, and "a user" is a connection whose token has a ``sub``:

* subscribe: ``allow_subscribe_for_client``, by a user or with
  ``allow_subscribe_for_anonymous``. (A subscription token never reaches the check.)
* publish / history / presence: ``allow_<action>_for_client``, or
  ``allow_<action>_for_subscriber`` when the connection is subscribed to the channel
  (the caller says so: `subscribed`; a subscribe's own recovery and join/leave count as
  subscribed); in both cases by a user or with ``allow_<action>_for_anonymous``.

`recovers` (``force_recovery``: a subscribe's recovery replays without the history
permission), `join_leave` and `pushes_join_leave` (``force_push_join_leave``: every
subscriber gets the pushes, not only those with the presence permission) are read by
the hub.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..centrifugo_config import ChannelOptions
from ..errors import ErrorCode
from .permissions import Action
from .principal import Principal


class NamespacePolicy:
    """A config file's `ChannelOptions` by namespace (see the module docstring)."""

    __slots__ = ("_insecure", "_namespaces")

    def __init__(self, options: Iterable[ChannelOptions], *, insecure: bool = False) -> None:
        self._namespaces = {o.name: o for o in options}
        self._insecure = insecure

    def options(self, topic: str) -> ChannelOptions | None:
        """The options of `topic`'s namespace, None when the file defines none."""
        name, sep, _ = topic.partition(":")
        return self._namespaces.get(name if sep else "")

    def refusal(self, action: Action, topic: str) -> ErrorCode | None:
        """Unknown namespace, or the action's feature off in it; None: go on."""
        found = self.options(topic)
        if found is None:
            return ErrorCode.INVALID_TOPIC
        if action is Action.PRESENCE and not found.presence:
            return ErrorCode.PRESENCE_OFF
        if action is Action.HISTORY and not (found.history_size and found.history_ttl):
            return ErrorCode.HISTORY_OFF
        return None

    def recovers(self, topic: str) -> bool:
        """``force_recovery``: a subscribe recovers whatever its history permission."""
        found = self.options(topic)
        return found is not None and found.force_recovery

    def join_leave(self, topic: str) -> bool:
        """``join_leave``: joins and leaves of `topic` are announced."""
        found = self.options(topic)
        return found is not None and found.join_leave

    def pushes_join_leave(self, topic: str) -> bool:
        """``force_push_join_leave``: every subscriber of `topic` gets them."""
        found = self.options(topic)
        return found is not None and found.join_leave and found.force_push_join_leave

    def __call__(self, principal: Principal, action: Action, topic: str,
                 subscribed: bool) -> bool:
        found = self.options(topic)
        if found is None:
            return False
        if principal.is_api_key or self._insecure:
            return True
        user = bool(principal.user)
        if action is Action.SUBSCRIBE:
            return found.allow_subscribe_for_client and (
                user or found.allow_subscribe_for_anonymous)
        if action is Action.PUBLISH:
            client, subscriber, anonymous = (found.allow_publish_for_client,
                                             found.allow_publish_for_subscriber,
                                             found.allow_publish_for_anonymous)
        elif action is Action.HISTORY:
            client, subscriber, anonymous = (found.allow_history_for_client,
                                             found.allow_history_for_subscriber,
                                             found.allow_history_for_anonymous)
        else:
            client, subscriber, anonymous = (found.allow_presence_for_client,
                                             found.allow_presence_for_subscriber,
                                             found.allow_presence_for_anonymous)
        return (client or (subscriber and subscribed)) and (user or anonymous)
