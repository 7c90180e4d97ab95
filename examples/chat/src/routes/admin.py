"""The ops page at /admin (the stats need the API key): live numbers and a publish form."""

from pubsocket import admin

admin("/admin")
