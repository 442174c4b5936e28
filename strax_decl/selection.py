"""Row selections and column projections applied to the rows a request returns.

``selection`` is what strax users write: a string such as ``"(s2_area > 100) & (width < 500)"``,
a list of such strings (all must hold), or a callable ``f(rows) -> boolean mask``. Strings are
parsed with :mod:`ast` and evaluated on the fields with numpy, never with ``eval``: only field
names, numbers, arithmetic (``**`` only to a constant power up to 64), comparisons,
``and``/``or``/``not`` (and ``&``/``|``/``^``/``~``), a few numpy functions, and strings compared
with a text field (``veto_type == "he_veto"``) are allowed;
anything else is refused with a message saying what.

Python binds ``&`` tighter than ``>``, so ``a > 1 & b < 2`` means ``a > (1 & b) < 2``, a
silent wrong answer in numexpr and numpy alike. Here an unparenthesised ``&``/``|``/``^`` on
the right of a comparison is an error that says where to put the parentheses (a bit test such
as ``flags & 4 == 4``, the ``&`` on the left, means what it says and is allowed).
"""

from __future__ import annotations

import ast
import io
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Selection", "make_mask", "project"]

Selection = str | Sequence[str] | Callable[[np.ndarray], Any]
Mask = Callable[[np.ndarray], np.ndarray]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_JOINS = ast.BitAnd | ast.BitOr | ast.BitXor
_MAX_EXPONENT = 64
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(np, name)
    for name in ("abs", "sqrt", "log", "log10", "log2", "exp", "sin", "cos", "tan", "arctan2")
} | {"isfinite": np.isfinite, "isnan": np.isnan, "minimum": np.minimum, "maximum": np.maximum}


class _Evaluator:
    """Evaluate one parsed selection string on the rows of one chunk."""

    def __init__(self, text: str, tree: ast.Expression, names: Sequence[str], what: str) -> None:
        self.text, self.tree, self.names, self.what = text, tree, set(names), what
        self._compared_text: set[int] = set()  # string constants compared with a field
        self._check(tree.body)

    def _fail(self, message: str) -> ValueError:
        return ValueError(f"selection {self.text!r} on {self.what}: {message}")

    def _offset(self, line: int, byte: int) -> int:
        """The index in the text of ``ast``'s position (1-based line, UTF-8 byte column)."""
        lines = io.StringIO(self.text, newline="").readlines()  # the parser's line breaks
        return sum(map(len, lines[: line - 1])) + len(lines[line - 1].encode()[:byte].decode())

    def _parenthesised(self, node: ast.expr) -> bool:
        assert node.end_lineno is not None and node.end_col_offset is not None
        before = self.text[: self._offset(node.lineno, node.col_offset)].rstrip()
        after = self.text[self._offset(node.end_lineno, node.end_col_offset) :].lstrip()
        return before.endswith("(") and after.startswith(")")

    def _check(self, node: ast.AST) -> None:
        """Refuse what cannot be evaluated, before any data is read."""
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise self._fail(f"comparison {type(op).__name__} is not allowed")
            for right in node.comparators:  # `a > 1 & b < 2` is `a > (1 & b) < 2`
                joins = isinstance(right, ast.BinOp) and isinstance(right.op, _JOINS)
                if joins and not self._parenthesised(right):
                    raise self._fail(
                        "'&', '|' and '^' bind tighter than comparisons; put each condition "
                        "in parentheses, e.g. '(a > 1) & (b < 2)', or use 'and'/'or'"
                    )
            for side in (node.left, *node.comparators):  # a text field: veto_type == "he_veto"
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    self._compared_text.add(id(side))
        elif isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self._fail(f"no field {node.id!r}; the fields are {sorted(self.names)}")
        elif isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS or node.keywords:
                raise self._fail(f"only these functions are allowed: {sorted(_FUNCTIONS)}")
            for arg in node.args:
                self._check(arg)
            return
        elif isinstance(node, ast.Constant):
            text = isinstance(node.value, str) and id(node) in self._compared_text
            if not isinstance(node.value, int | float) and not text:  # bool is an int
                raise self._fail(
                    f"{node.value!r}: only numbers are allowed as constants (and strings "
                    "compared with a text field, e.g. veto_type == 'he_veto')"
                )
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self._fail(f"operator {type(node.op).__name__} is not allowed")
            if isinstance(node.op, ast.Pow) and not _small_number(node.right):
                raise self._fail(  # 9**9**9 would compute for ever
                    f"the exponent in {ast.unparse(node)!r} must be a number from "
                    f"-{_MAX_EXPONENT} to {_MAX_EXPONENT}"
                )
        elif not isinstance(
            node,
            ast.BoolOp
            | ast.UnaryOp
            | ast.cmpop
            | ast.operator
            | ast.boolop
            | ast.unaryop
            | ast.Load,
        ):
            raise self._fail(f"{ast.unparse(node)!r} is not allowed ({type(node).__name__})")
        for child in ast.iter_child_nodes(node):
            self._check(child)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._eval(self.tree.body, rows))
        except (ArithmeticError, TypeError, ValueError) as e:
            raise self._fail(f"{type(e).__name__}: {e}") from e

    def _eval(self, node: ast.expr, rows: np.ndarray) -> Any:
        if isinstance(node, ast.Name):
            return rows[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BoolOp):
            join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            values = [self._eval(v, rows) for v in node.values]
            out = values[0]
            for value in values[1:]:
                out = join(out, value)
            return out
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, rows)
            if isinstance(node.op, ast.Not) or (
                isinstance(node.op, ast.Invert) and np.asarray(value).dtype == bool
            ):
                return np.logical_not(value)
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.UAdd):
                return +value
            return ~value  # bitwise not of an integer field
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, rows), self._eval(node.right, rows))
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, rows)
            result: Any = True
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._eval(right_node, rows)
                _text_against_text(left, right)
                result = np.logical_and(result, _COMPARE[type(op)](left, right))
                left = right
            return result
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(self._eval(a, rows) for a in node.args))


def _text_against_text(left: Any, right: Any) -> None:
    """A string is compared only with a text field (numpy would quietly say False)."""
    for a, b in ((left, right), (right, left)):
        if isinstance(a, str) and np.asarray(b).dtype.kind not in "US":
            dtype = np.asarray(b).dtype
            raise TypeError(f"{a!r} is text, but the value compared with it is {dtype}")


def _small_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and abs(node.value) <= _MAX_EXPONENT
    )


def _parse(text: str, names: Sequence[str], what: str) -> Mask:
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _Evaluator(text.strip(), tree, names, what)
    except SyntaxError as e:
        raise ValueError(f"selection {text!r} on {what} is not an expression: {e.msg}") from e
    except RecursionError as e:
        raise ValueError(f"selection {text[:80]!r}... on {what} is nested too deeply") from e


def make_mask(selection: Selection, dtype: np.dtype, what: str) -> Mask:
    """A function giving the boolean mask of the rows ``selection`` keeps.

    ``what`` names the data in messages (e.g. ``"event_basics of run_1"``). Strings are checked
    here, against ``dtype``'s fields, so a typo fails before anything is computed.
    """
    names = list(dtype.names or ())
    if callable(selection):
        user = selection
        label = getattr(user, "__name__", repr(user))
        parts: list[tuple[str, Mask]] = [(label, lambda rows: np.asarray(user(rows)))]
    else:
        texts = [selection] if isinstance(selection, str) else selection
        if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"selection must be a string, a list of strings or a callable, not {selection!r}"
            )
        parts = [(t, _parse(t, names, what)) for t in texts]

    def mask(rows: np.ndarray) -> np.ndarray:
        keep = np.ones(len(rows), dtype=bool)
        for label, part in parts:
            got = part(rows)
            if got.dtype == bool and got.shape == ():  # a constant condition, e.g. "1 > 0"
                got = np.broadcast_to(got, keep.shape)
            if got.dtype != bool or got.shape != keep.shape:
                raise ValueError(
                    f"selection {label!r} on {what} gave {got.dtype} values of shape "
                    f"{got.shape}, not one True/False per row ({keep.shape})"
                )
            keep &= got
        return keep

    return mask


def project(
    dtype: np.dtype,
    keep_columns: Sequence[str] | None,
    drop_columns: Sequence[str] | None,
    what: str,
) -> list[str] | None:
    """The fields to return (in ``dtype``'s order), or None for all of them."""
    if keep_columns is None and drop_columns is None:
        return None
    if keep_columns is not None and drop_columns is not None:
        raise ValueError("give keep_columns or drop_columns, not both")
    names = list(dtype.names or ())
    asked = [keep_columns] if isinstance(keep_columns, str) else list(keep_columns or ())
    dropped = [drop_columns] if isinstance(drop_columns, str) else list(drop_columns or ())
    unknown = [c for c in (*asked, *dropped) if c not in names]
    if unknown:
        raise KeyError(f"{what} has no field(s) {unknown}; its fields: {names}")
    if keep_columns is not None:
        if not asked:
            raise ValueError(f"keep_columns is empty: no field of {what} would come back")
        return [n for n in names if n in asked]
    return [n for n in names if n not in dropped]
