"""Drive expat over an untrusted stream with entities refused and time bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO
from xml.parsers import expat

from scorer.parsers.limits import ArtifactRejected, CappedReader, Deadline

CHUNK = 1 << 20

StartHandler = Callable[[str, dict[str, str]], None]
EndHandler = Callable[[str], None]


class _Forbidden:
    """Expat callbacks that refuse every kind of entity declaration or reference."""

    def __init__(self, what: str) -> None:
        self.what = what

    def entity_decl(self, name: str, *args: Any) -> None:
        # billion laughs and external entities both start with a declaration: refuse it outright
        raise ArtifactRejected(
            f"{self.what} declares the XML entity {name!r}; entity declarations are refused for safety "
            "(billion-laughs / external-entity attacks)"
        )

    def external_ref(self, context: str | None, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise ArtifactRejected(f"{self.what} references the external entity {system_id!r}; refused for safety")


def new_parser(what: str) -> expat.XMLParserType:
    """Create an expat parser that refuses DTD entities and never fetches external resources."""
    parser = expat.ParserCreate()
    forbidden = _Forbidden(what)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = forbidden.entity_decl
    parser.UnparsedEntityDeclHandler = forbidden.entity_decl
    parser.ExternalEntityRefHandler = forbidden.external_ref
    parser.buffer_text = True
    parser.buffer_size = 64 * 1024
    return parser


def feed(parser: expat.XMLParserType, stream: BinaryIO | CappedReader, what: str, deadline: Deadline,
         between_chunks: Callable[[], None] | None = None) -> None:
    """Feed the whole stream to ``parser`` in chunks; raise ArtifactRejected on malformed XML.

    ``between_chunks`` runs after each chunk, e.g. to fold what the handlers buffered.
    """
    try:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            parser.Parse(chunk, False)
            deadline.check()
            if between_chunks is not None:
                between_chunks()
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        message = expat.errors.messages.get(exc.code, str(exc)) if exc.code else str(exc)
        raise ArtifactRejected(
            f"{what} is not well-formed XML ({message} at line {exc.lineno}, column {exc.offset})"
        ) from exc
