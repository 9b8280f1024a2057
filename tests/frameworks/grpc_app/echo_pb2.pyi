from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Msg(_message.Message):
    __slots__ = ("n", "payload", "text")
    N_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    n: int
    payload: bytes
    text: str
    def __init__(self, n: _Optional[int] = ..., payload: _Optional[bytes] = ..., text: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("count", "size", "interval_ms", "marker")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    count: int
    size: int
    interval_ms: int
    marker: str
    def __init__(self, count: _Optional[int] = ..., size: _Optional[int] = ..., interval_ms: _Optional[int] = ..., marker: _Optional[str] = ...) -> None: ...
