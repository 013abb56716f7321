"""Success and failure conditions over a metric `result`, in Argo Rollouts' spelling, evaluated without `eval`.

Argo Rollouts evaluates `successCondition` / `failureCondition` with expr-lang over `result` (argo-rollouts
utils/evaluate/evaluate.go; https://argoproj.github.io/argo-rollouts/features/analysis/). The subset understood
here: numbers, `true`/`false`, `result`, `result[i]`, comparisons (`< <= > >= == !=`, chained), `+ - * /`,
`&&`/`and`, `||`/`or`, `!`/`not`, parentheses, and `len(x)`, `isNaN(x)`, `isInf(x)`, `abs(x)`, `min(...)`,
`max(...)`, `default(x, v)` (v when x is NaN or an empty list). Anything else is refused when the spec is loaded.
A condition that cannot be evaluated on a measurement (`result[0]` of an empty vector, a comparison with a list)
raises ConditionError: in Argo that measurement is an Error, not a Failure.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

Result = float | list[float]


class ConditionError(ValueError):
    """The condition is not valid, or cannot be evaluated on this result."""


def _default(x: Any, v: Any) -> Any:
    if (isinstance(x, float) and math.isnan(x)) or (isinstance(x, list) and not x):
        return v
    return x


def _num(name: str, f: Callable[[float], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        if not isinstance(x, int | float) or isinstance(x, bool):
            raise ConditionError(f"{name}() takes a number, got {type(x).__name__}")
        return f(float(x))
    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "isNaN": _num("isNaN", math.isnan), "isInf": _num("isInf", math.isinf), "abs": _num("abs", abs),
    "min": min, "max": max, "default": _default,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_NAMES = {"true": True, "false": False}


def _translate(text: str) -> str:
    """expr-lang's `&& || !` to Python's `and or not` (outside of nothing else: conditions have no strings)."""
    if any(q in text for q in "'\"`"):
        raise ConditionError("strings are not supported in a condition")
    out = text.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", out)


def compile_condition(text: str) -> ast.Expression:
    """Parse and check a condition once (spec load); ConditionError says what is not supported."""
    try:
        tree = ast.parse(_translate(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"not a valid condition ({exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in ("result", *_NAMES, *FUNCTIONS):
            raise ConditionError(f"unknown name {node.id!r} (known: result, true, false, {', '.join(FUNCTIONS)})")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ConditionError("only len, isNaN, isInf, abs, min, max and default can be called")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or
                                               not isinstance(node.value, int | float)):
            raise ConditionError(f"unsupported constant {node.value!r}")
        allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
                   ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Subscript, ast.Call, *_COMPARE, *_ARITH)
        if not isinstance(node, allowed):
            raise ConditionError(f"unsupported syntax: {type(node).__name__}")
    return tree


def evaluate(tree: ast.Expression, result: Result) -> bool:
    """The condition's truth on `result`; ConditionError when it cannot be evaluated (or is not a boolean)."""
    value = _eval(tree.body, result)
    if not isinstance(value, bool):
        raise ConditionError(f"the condition gives {type(value).__name__}, not true or false")
    return value


def _eval(node: ast.expr, result: Result) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return result if node.id == "result" else _NAMES.get(node.id, node.id)
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, result) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, result)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.Subscript):
        base, index = _eval(node.value, result), _eval(node.slice, result)
        if not isinstance(base, list) or not isinstance(index, int):
            raise ConditionError("only result[<integer>] of a vector result can be indexed")
        if not -len(base) <= index < len(base):
            raise ConditionError(f"result[{index}]: the result has {len(base)} value(s)")
        return base[index]
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_eval(a, result) for a in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise ConditionError(f"{node.func.id}(): {exc}") from None
    if isinstance(node, ast.BinOp):
        try:
            return _ARITH[type(node.op)](_eval(node.left, result), _eval(node.right, result))
        except (TypeError, ZeroDivisionError) as exc:
            raise ConditionError(f"arithmetic: {exc}") from None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, result)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, result)
            if isinstance(left, list) or isinstance(right, list):
                raise ConditionError("a list cannot be compared: use result[0] (or len(result))")
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise ConditionError(f"unsupported syntax: {type(node).__name__}")
