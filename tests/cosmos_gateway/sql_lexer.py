"""Tokenizer for the Cosmos SQL subset (see ``sql_parser`` for the grammar)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import unsupported_query

KEYWORDS = frozenset(
    {
        *("SELECT", "VALUE", "TOP", "DISTINCT", "FROM", "WHERE", "ORDER", "BY", "ASC", "DESC"),
        *("OFFSET", "LIMIT", "AND", "OR", "NOT", "IN", "BETWEEN", "AS", "TRUE", "FALSE", "NULL"),
        *("UNDEFINED", "JOIN", "GROUP", "EXISTS", "LIKE", "ESCAPE", "ARRAY", "UDF"),
    }
)

_TWO_CHAR_OPS = ("!=", "<>", "<=", ">=", "||", "??")
_ONE_CHAR_OPS = "=<>*,.()[]{}:-+/%?&|^~"
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class Token:
    """One lexical token.

    Attributes:
        kind: ``ident``, ``kw``, ``num``, ``str``, ``param``, ``op`` or ``eof``.
        text: Keyword (upper-cased), operator, identifier or decoded string.
        pos: Offset in the query text, for error messages.
        number: Parsed value for ``num`` tokens.
    """

    kind: str
    text: str
    pos: int
    number: float | int = 0


def tokenize(text: str) -> list[Token]:
    """Splits query text into tokens.

    Args:
        text: The query.

    Returns:
        The tokens, ending with an ``eof`` token.

    Raises:
        GatewayError: On a character or literal the lexer does not know.
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if word.upper() in KEYWORDS:
                tokens.append(Token("kw", word.upper(), i))
            else:
                tokens.append(Token("ident", word, i))
            i = j
        elif ch == "@":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j == i + 1:
                raise unsupported_query(f"bare '@' at position {i}")
            tokens.append(Token("param", text[i:j], i))
            i = j
        elif ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            i = _lex_number(text, i, tokens)
        elif ch in "'\"":
            i = _lex_string(text, i, tokens)
        elif text[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            tokens.append(Token("op", ch, i))
            i += 1
        else:
            raise unsupported_query(f"unexpected character {ch!r} at position {i}")
    tokens.append(Token("eof", "", n))
    return tokens


def _lex_number(text: str, i: int, tokens: list[Token]) -> int:
    j = i
    while j < len(text) and (text[j].isdigit() or text[j] == "."):
        j += 1
    if j < len(text) and text[j] in "eE":
        k = j + 1
        if k < len(text) and text[k] in "+-":
            k += 1
        if k < len(text) and text[k].isdigit():
            j = k
            while j < len(text) and text[j].isdigit():
                j += 1
    raw = text[i:j]
    try:
        value: float | int = int(raw) if raw.isdigit() else float(raw)
    except ValueError:
        raise unsupported_query(f"malformed number {raw!r} at position {i}") from None
    tokens.append(Token("num", raw, i, value))
    return j


def _lex_string(text: str, i: int, tokens: list[Token]) -> int:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == quote:
            tokens.append(Token("str", "".join(out), i))
            return j + 1
        if ch == "\\" and j + 1 < len(text):
            esc = text[j + 1]
            if esc == "u" and j + 6 <= len(text):
                try:
                    out.append(chr(int(text[j + 2 : j + 6], 16)))
                except ValueError:
                    raise unsupported_query(f"bad \\u escape at position {j}") from None
                j += 6
                continue
            if esc not in _ESCAPES:
                raise unsupported_query(f"unknown escape \\{esc} at position {j}")
            out.append(_ESCAPES[esc])
            j += 2
            continue
        out.append(ch)
        j += 1
    raise unsupported_query(f"unterminated string starting at position {i}")
