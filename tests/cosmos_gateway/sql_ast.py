"""Syntax tree for the Cosmos SQL subset the gateway understands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Functions evaluated per row; name -> (min args, max args).
SCALAR_FUNCTIONS: dict[str, tuple[int, int]] = {
    "IS_DEFINED": (1, 1),
    "IS_NULL": (1, 1),
    "IS_BOOL": (1, 1),
    "IS_NUMBER": (1, 1),
    "IS_STRING": (1, 1),
    "IS_ARRAY": (1, 1),
    "IS_OBJECT": (1, 1),
    "IS_PRIMITIVE": (1, 1),
    "ARRAY_CONTAINS": (2, 3),
    "ARRAY_LENGTH": (1, 1),
    "STARTSWITH": (2, 3),
    "ENDSWITH": (2, 3),
    "CONTAINS": (2, 3),
    "LOWER": (1, 1),
    "UPPER": (1, 1),
    "LENGTH": (1, 1),
}

# Functions that fold all matching rows into one value.
AGGREGATE_FUNCTIONS: dict[str, tuple[int, int]] = {
    "COUNT": (1, 1),
    "SUM": (1, 1),
    "MIN": (1, 1),
    "MAX": (1, 1),
    "AVG": (1, 1),
}


@dataclass(frozen=True)
class Literal:
    """A constant: string, number, boolean or null."""

    value: Any


@dataclass(frozen=True)
class Param:
    """A ``@name`` query parameter."""

    name: str


@dataclass(frozen=True)
class Path:
    """A property access rooted at the FROM alias, e.g. ``c.tags["x"]``.

    Attributes:
        root: The alias the path starts from.
        steps: Each step is a Literal (property name or array index) or a Param.
    """

    root: str
    steps: tuple[Expr, ...]


@dataclass(frozen=True)
class ArrayLit:
    """An array constructor ``[a, b]``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary:
    """``NOT x`` (the only unary operator kept after constant folding)."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary:
    """``AND``, ``OR`` or a comparison."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class InList:
    """``x [NOT] IN (a, b, ...)``."""

    value: Expr
    items: tuple[Expr, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    """``x [NOT] BETWEEN low AND high``."""

    value: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True)
class Call:
    """A built-in function call; ``name`` is upper-case."""

    name: str
    args: tuple[Expr, ...]


Expr = Literal | Param | Path | ArrayLit | Unary | Binary | InList | Between | Call


@dataclass(frozen=True)
class SelectStar:
    """``SELECT *``."""


@dataclass(frozen=True)
class SelectValue:
    """``SELECT VALUE expr``."""

    expr: Expr


@dataclass(frozen=True)
class SelectList:
    """``SELECT a, b AS x``; each item is (expression, output name)."""

    items: tuple[tuple[Expr, str], ...]


Select = SelectStar | SelectValue | SelectList


@dataclass(frozen=True)
class OrderItem:
    """One ``ORDER BY`` term."""

    path: Path
    descending: bool


@dataclass(frozen=True)
class Query:
    """A parsed query."""

    select: Select
    alias: str
    top: Expr | None
    where: Expr | None
    order_by: tuple[OrderItem, ...]
    offset: Expr | None
    limit: Expr | None

    @property
    def is_aggregate(self) -> bool:
        """Whether the SELECT clause folds rows with an aggregate function."""
        if isinstance(self.select, SelectValue):
            return _is_aggregate_call(self.select.expr)
        if isinstance(self.select, SelectList):
            return any(_is_aggregate_call(expr) for expr, _ in self.select.items)
        return False


def _is_aggregate_call(expr: Expr) -> bool:
    return isinstance(expr, Call) and expr.name in AGGREGATE_FUNCTIONS
