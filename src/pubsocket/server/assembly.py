"""Reassembly of fragmented WebSocket messages, with a fragment cap and early UTF-8 checks.

websockets' sans-I/O parser yields frames; an unfragmented message never comes here (the
connection's fast path). A fragmented text message is checked for valid UTF-8 as each
fragment arrives, so a bad byte fails the connection (1007) before the rest is buffered.
"""

from __future__ import annotations

import codecs

from websockets.frames import Frame, Opcode

from ..errors import CloseCode

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class AssemblyError(Exception):
    """The message breaks a limit or is not valid UTF-8: fail with `code`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Assembler:
    """One connection's fragmented message in progress (at most one at a time)."""

    __slots__ = ("_decoder", "_frags", "_max_fragments", "_text")

    def __init__(self, max_fragments: int) -> None:
        self._max_fragments = max_fragments
        self._frags: list[bytes] | None = None
        self._text = False
        self._decoder: codecs.IncrementalDecoder | None = None

    @property
    def busy(self) -> bool:
        """True while a fragmented message is in progress."""
        return self._frags is not None

    def start(self, frame: Frame) -> None:
        """The first fragment (TEXT or BINARY with fin unset). Raises `AssemblyError`."""
        self._frags = [bytes(frame.data)]
        self._text = frame.opcode is Opcode.TEXT
        self._decoder = _Utf8Decoder() if self._text else None
        self._check(self._frags[0], final=False)

    def add(self, frame: Frame) -> tuple[bytes, bool] | None:
        """A CONT frame: the whole message ``(data, is_text)`` once `frame` is the last
        one, else None. Raises `AssemblyError`."""
        frags = self._frags
        if frags is None:  # the protocol already failed the connection
            return None
        data = bytes(frame.data)
        frags.append(data)
        if self._max_fragments and len(frags) > self._max_fragments:
            self.reset()
            raise AssemblyError(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
        self._check(data, final=frame.fin)
        if not frame.fin:
            return None
        self.reset()
        return b"".join(frags), self._text

    def reset(self) -> None:
        """Forget the message in progress (the connection is failing)."""
        self._frags, self._decoder = None, None

    def _check(self, data: bytes, final: bool) -> None:
        if self._decoder is None:
            return
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError:
            self.reset()
            raise AssemblyError(CloseCode.INVALID_DATA, "invalid UTF-8") from None
