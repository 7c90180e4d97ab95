"""Wire protocols that need more than a codec: each one a package that plugs into the
generic session through the hook of `pubsocket.hub.hook` (docs/design.md "The seams")."""
