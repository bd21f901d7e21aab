"""Recursive-descent parser for the Cosmos SQL subset the gateway runs.

Grammar (keywords case-insensitive)::

    query    := SELECT [TOP n] select FROM ident [[AS] ident] [WHERE expr]
                [ORDER BY path [ASC|DESC] {, path [ASC|DESC]}] [OFFSET n LIMIT n]
    select   := * | VALUE expr | expr [AS name] {, expr [AS name]}
    expr     := expr OR expr | expr AND expr | NOT expr
              | operand (= | != | <> | < | > | <= | >=) operand
              | operand [NOT] IN (operand, ...) | operand [NOT] BETWEEN operand AND operand
              | operand
    operand  := 'str' | "str" | number | true | false | null | @param | (expr)
              | [operand, ...] | alias{.name | ["name"] | [index] | [@param]} | FUNC(expr, ...)
    n        := integer | @param

Functions: see ``sql_ast.SCALAR_FUNCTIONS`` and ``AGGREGATE_FUNCTIONS`` (COUNT,
SUM, MIN, MAX, AVG; only as whole SELECT items). Anything else (JOIN, GROUP BY,
DISTINCT, LIKE, subqueries, arithmetic, unknown functions) raises
``unsupported_query`` (400, substatus 1004) so it fails loudly instead of being
guessed at.
"""

from __future__ import annotations

from .errors import GatewayError, bad_request, unsupported_query
from .sql_ast import (
    AGGREGATE_FUNCTIONS,
    SCALAR_FUNCTIONS,
    ArrayLit,
    Between,
    Binary,
    Call,
    Expr,
    InList,
    Literal,
    OrderItem,
    Param,
    Path,
    Query,
    Select,
    SelectList,
    SelectStar,
    SelectValue,
    Unary,
)
from .sql_lexer import Token, tokenize

# Keywords whose presence means a feature this gateway deliberately leaves out.
_UNSUPPORTED_KEYWORDS = {
    "DISTINCT": "DISTINCT",
    "JOIN": "JOIN",
    "GROUP": "GROUP BY",
    "EXISTS": "EXISTS subqueries",
    "LIKE": "LIKE",
    "ARRAY": "ARRAY subqueries",
    "UDF": "user-defined functions",
}

_COMPARISONS = ("=", "!=", "<>", "<", ">", "<=", ">=")


def parse_query(text: str) -> Query:
    """Parses a full ``SELECT`` statement.

    Args:
        text: The query text.

    Returns:
        The parsed query.

    Raises:
        GatewayError: 400 (substatus 1004) for anything outside the subset, plain
            400 for references to an unknown alias.
    """
    parser = _Parser(tokenize(text))
    query = parser.query()
    parser.expect_eof()
    _check_aliases(query)
    return query


def parse_condition(text: str) -> tuple[str, Expr | None]:
    """Parses a patch filter predicate such as ``FROM c WHERE c.n > 1``.

    Args:
        text: The predicate text.

    Returns:
        ``(alias, where-expression or None)``.
    """
    query = parse_query("SELECT * " + text)
    if query.order_by or query.top or query.offset is not None:
        raise bad_request("A patch condition may only contain FROM and WHERE.")
    return query.alias, query.where


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    # -- token helpers -------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str) -> GatewayError:
        tok = self.tok
        if tok.kind == "kw" and tok.text in _UNSUPPORTED_KEYWORDS:
            return unsupported_query(f"{_UNSUPPORTED_KEYWORDS[tok.text]} (at position {tok.pos})")
        found = "end of query" if tok.kind == "eof" else repr(tok.text)
        return unsupported_query(f"expected {expected} but found {found} at position {tok.pos}")

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        tok = self.accept(kind, text)
        if tok is None:
            raise self.fail(what or text or kind)
        return tok

    def expect_eof(self) -> None:
        if self.tok.kind != "eof":
            raise self.fail("end of query")

    # -- statement -----------------------------------------------------
    def query(self) -> Query:
        self.expect("kw", "SELECT")
        if self.tok.kind == "kw" and self.tok.text == "DISTINCT":
            raise self.fail("select list")
        top = self.count_expr() if self.accept("kw", "TOP") else None
        select = self.select_clause()
        self.expect("kw", "FROM")
        alias = self.from_clause()
        where = self.expr() if self.accept("kw", "WHERE") else None
        order_by: list[OrderItem] = []
        if self.accept("kw", "ORDER"):
            self.expect("kw", "BY")
            order_by.append(self.order_item())
            while self.accept("op", ","):
                order_by.append(self.order_item())
        offset = limit = None
        if self.accept("kw", "OFFSET"):
            offset = self.count_expr()
            self.expect("kw", "LIMIT")
            limit = self.count_expr()
        return Query(select, alias, top, where, tuple(order_by), offset, limit)

    def count_expr(self) -> Expr:
        tok = self.tok
        if tok.kind == "num" and isinstance(tok.number, int):
            self.i += 1
            return Literal(tok.number)
        if tok.kind == "param":
            self.i += 1
            return Param(tok.text)
        raise self.fail("a non-negative integer or @parameter")

    def select_clause(self) -> Select:
        if self.accept("op", "*"):
            return SelectStar()
        if self.accept("kw", "VALUE"):
            return SelectValue(self.expr())
        items: list[tuple[Expr, str]] = []
        unnamed = 0
        while True:
            expr = self.expr()
            if self.accept("kw", "AS"):
                name = self.expect("ident", what="an output name").text
            elif (
                isinstance(expr, Path)
                and expr.steps
                and isinstance(expr.steps[-1], Literal)
                and isinstance(expr.steps[-1].value, str)
            ):
                name = expr.steps[-1].value
            else:
                unnamed += 1
                name = f"${unnamed}"
            items.append((expr, name))
            if not self.accept("op", ","):
                return SelectList(tuple(items))

    def from_clause(self) -> str:
        first = self.expect("ident", what="a container alias")
        if self.tok.kind == "kw" and self.tok.text == "IN":
            raise unsupported_query(f"FROM ... IN iteration (at position {self.tok.pos})")
        alias = first.text
        if self.accept("kw", "AS"):
            alias = self.expect("ident", what="an alias").text
        elif self.tok.kind == "ident":
            alias = self.expect("ident").text
        if self.tok.kind == "kw" and self.tok.text == "JOIN":
            raise self.fail("WHERE")
        return alias

    def order_item(self) -> OrderItem:
        start = self.tok.pos
        expr = self.expr()
        if not isinstance(expr, Path):
            raise unsupported_query(f"ORDER BY on something other than a property path (at position {start})")
        descending = False
        if self.accept("kw", "DESC"):
            descending = True
        else:
            self.accept("kw", "ASC")
        return OrderItem(expr, descending)

    # -- expressions -----------------------------------------------------
    def expr(self) -> Expr:
        left = self.and_expr()
        while self.accept("kw", "OR"):
            left = Binary("OR", left, self.and_expr())
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.accept("kw", "AND"):
            left = Binary("AND", left, self.not_expr())
        return left

    def not_expr(self) -> Expr:
        if self.accept("kw", "NOT"):
            return Unary("NOT", self.not_expr())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        tok = self.tok
        if tok.kind == "op" and tok.text in _COMPARISONS:
            self.i += 1
            op = "!=" if tok.text == "<>" else tok.text
            return Binary(op, left, self.primary())
        negated = bool(self.accept("kw", "NOT"))
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            items = [self.primary()]
            while self.accept("op", ","):
                items.append(self.primary())
            self.expect("op", ")")
            return InList(left, tuple(items), negated)
        if self.accept("kw", "BETWEEN"):
            low = self.primary()
            self.expect("kw", "AND")
            return Between(left, low, self.primary(), negated)
        if negated:
            raise self.fail("IN or BETWEEN after NOT")
        if tok.kind == "op" and tok.text in "+-*/%||??&|^":
            raise unsupported_query(f"operator {tok.text!r} (at position {tok.pos})")
        return left

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "str":
            self.i += 1
            return Literal(tok.text)
        if tok.kind == "num":
            self.i += 1
            return Literal(tok.number)
        if tok.kind == "op" and tok.text == "-" and self.tokens[self.i + 1].kind == "num":
            self.i += 2
            return Literal(-self.tokens[self.i - 1].number)
        if tok.kind == "param":
            self.i += 1
            return Param(tok.text)
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE", "NULL"):
            self.i += 1
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[tok.text])
        if self.accept("op", "("):
            if self.tok.kind == "kw" and self.tok.text == "SELECT":
                raise unsupported_query(f"subquery (at position {self.tok.pos})")
            inner = self.expr()
            self.expect("op", ")")
            return inner
        if self.accept("op", "["):
            items: list[Expr] = []
            if not self.accept("op", "]"):
                items.append(self.primary())
                while self.accept("op", ","):
                    items.append(self.primary())
                self.expect("op", "]")
            return ArrayLit(tuple(items))
        if tok.kind == "ident":
            self.i += 1
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(tok)
            return self.path(tok.text)
        raise self.fail("an expression")

    def call(self, name_tok: Token) -> Expr:
        name = name_tok.text.upper()
        arity = SCALAR_FUNCTIONS.get(name) or AGGREGATE_FUNCTIONS.get(name)
        if arity is None:
            raise unsupported_query(f"function {name_tok.text}() (at position {name_tok.pos})")
        self.expect("op", "(")
        args: list[Expr] = []
        if not self.accept("op", ")"):
            args.append(self.expr())
            while self.accept("op", ","):
                args.append(self.expr())
            self.expect("op", ")")
        if not arity[0] <= len(args) <= arity[1]:
            raise bad_request(f"{name} takes {arity[0]}..{arity[1]} arguments, got {len(args)}.")
        return Call(name, tuple(args))

    def path(self, root: str) -> Path:
        steps: list[Expr] = []
        while True:
            if self.accept("op", "."):
                tok = self.tok
                if tok.kind == "kw":
                    hint = f'{root}["{tok.text.lower()}"]'
                    raise bad_request(f"{tok.text} is a reserved word; write {hint} (position {tok.pos}).")
                steps.append(Literal(self.expect("ident", what="a property name").text))
            elif self.accept("op", "["):
                tok = self.tok
                if tok.kind in ("str", "num"):
                    self.i += 1
                    steps.append(Literal(tok.text if tok.kind == "str" else tok.number))
                elif tok.kind == "param":
                    self.i += 1
                    steps.append(Param(tok.text))
                else:
                    raise self.fail("a property name, index or @parameter inside [ ]")
                self.expect("op", "]")
            else:
                return Path(root, tuple(steps))


def _check_aliases(query: Query) -> None:
    """Rejects unknown aliases and aggregates used anywhere but the top of SELECT."""
    tops: list[Expr] = []
    if isinstance(query.select, SelectValue):
        tops.append(query.select.expr)
    elif isinstance(query.select, SelectList):
        tops.extend(expr for expr, _ in query.select.items)
        aggregates = [isinstance(e, Call) and e.name in AGGREGATE_FUNCTIONS for e in tops]
        if any(aggregates) and not all(aggregates):
            raise unsupported_query("mixing aggregates and plain values in SELECT (needs GROUP BY)")
    allowed = {id(expr) for expr in tops}
    exprs: list[Expr] = list(tops)
    if query.where is not None:
        exprs.append(query.where)
    exprs.extend(item.path for item in query.order_by)
    while exprs:
        expr = exprs.pop()
        if isinstance(expr, Path):
            if expr.root != query.alias:
                raise bad_request(
                    f"Identifier '{expr.root}' could not be resolved (FROM alias is '{query.alias}')."
                )
            exprs.extend(expr.steps)
        elif isinstance(expr, Unary):
            exprs.append(expr.operand)
        elif isinstance(expr, Binary):
            exprs.extend((expr.left, expr.right))
        elif isinstance(expr, InList):
            exprs.append(expr.value)
            exprs.extend(expr.items)
        elif isinstance(expr, Between):
            exprs.extend((expr.value, expr.low, expr.high))
        elif isinstance(expr, ArrayLit):
            exprs.extend(expr.items)
        elif isinstance(expr, Call):
            if expr.name in AGGREGATE_FUNCTIONS and id(expr) not in allowed:
                raise unsupported_query(f"aggregate {expr.name}() anywhere but the top level of SELECT")
            exprs.extend(expr.args)
