"""Calico's selector language: parse once into a small expression tree, match label sets.

Grammar (as Calico's reference "Selectors" section documents it; `!` binds tightest, then `&&`,
then `||`; parentheses group):

    expr    := and ( "||" and )*
    and     := unary ( "&&" unary )*
    unary   := "!" unary | "(" expr ")" | term
    term    := "all()" | "global()" | "has(" key ")"
             | key "==" str | key "!=" str | key "in" set | key "not" "in" set
             | key "contains" str | key "starts" "with" str | key "ends" "with" str
    set     := "{" [ str ( "," str )* ] "}"
    str     := '"..."' | "'...'"

`k != "v"` and `k not in {...}` also match label sets without `k` (Calico: "Matches endpoints
with label k not equal to v, or without label k"). An empty selector is `all()`. `global()`
selects non-namespaced resources (host endpoints, global network sets), so it selects no pod.

Errors are located: `SelectorError` says at which column of which selector the parser stopped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ManifestError


class SelectorError(ManifestError):
    """A selector that does not parse; the message names the column and what was expected."""


@dataclass(frozen=True, slots=True)
class All:
    """`all()` (and the empty selector): every label set."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Always true."""
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global:
    """`global()`: non-namespaced resources only, so never a pod."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Never true for a pod."""
        return False

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has:
    """`has(k)`."""

    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label is present."""
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class Compare:
    """`k == v`, `k != v`, `k in {..}`, `k not in {..}`, contains / starts with / ends with."""

    key: str
    op: str  # ==, !=, in, not in, contains, starts with, ends with
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Calico's semantics: the negative forms also match a missing label."""
        value = labels.get(self.key)
        if self.op in ("!=", "not in"):
            return value is None or value not in self.values
        if value is None:
            return False
        if self.op in ("==", "in"):
            return value in self.values
        if self.op == "contains":
            return self.values[0] in value
        if self.op == "starts with":
            return value.startswith(self.values[0])
        return value.endswith(self.values[0])

    def __str__(self) -> str:
        if self.op in ("in", "not in"):
            return f"{self.key} {self.op} {{{', '.join(repr(v) for v in self.values)}}}"
        return f"{self.key} {self.op} {self.values[0]!r}"


@dataclass(frozen=True, slots=True)
class Not:
    """`!expr`."""

    operand: Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        """The negation."""
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class And:
    """`a && b && ...`."""

    operands: tuple[Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every operand matches."""
        return all(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(o) for o in self.operands) + ")"


@dataclass(frozen=True, slots=True)
class Or:
    """`a || b || ...`."""

    operands: tuple[Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Some operand matches."""
        return any(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(o) for o in self.operands) + ")"


Expr = All | Global | Has | Compare | Not | And | Or

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op>==|!=|&&|\|\||!|\(|\)|\{|\}|,)
  | (?P<str>"[^"]*"|'[^']*')
  | (?P<word>[A-Za-z0-9_./\-]+)
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # op, str, word, end
    text: str
    col: int  # 1-based column


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            what = "an unterminated string" if ch in "'\"" else f"unexpected character {ch!r}"
            raise SelectorError(f"selector {text!r}: {what} at column {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group(kind)
            out.append(_Tok(kind, value[1:-1] if kind == "str" else value, pos + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, expected: str, tok: _Tok | None = None) -> SelectorError:
        tok = tok or self.peek()
        got = "the end" if tok.kind == "end" else repr(tok.text)
        return SelectorError(f"selector {self.text!r}: expected {expected} at column {tok.col}, got {got}")

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise self.fail(repr(op), tok)

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            return All()
        expr = self.expr()
        if self.peek().kind != "end":
            raise self.fail("'&&', '||' or the end")
        return expr

    def expr(self) -> Expr:
        parts = [self.conj()]
        while self.peek().kind == "op" and self.peek().text == "||":
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self) -> Expr:
        parts = [self.unary()]
        while self.peek().kind == "op" and self.peek().text == "&&":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "!":
            self.take()
            return Not(self.unary())
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.expr()
            self.expect_op(")")
            return inner
        return self.term()

    def string(self) -> str:
        tok = self.take()
        if tok.kind != "str":
            raise self.fail("a quoted string", tok)
        return tok.text

    def term(self) -> Expr:
        tok = self.take()
        if tok.kind != "word":
            raise self.fail("a label key, has(), all() or '('", tok)
        nxt = self.peek()
        if tok.text in ("all", "global", "has") and nxt.kind == "op" and nxt.text == "(":
            self.take()
            if tok.text == "has":
                key_tok = self.take()
                if key_tok.kind != "word":
                    raise self.fail("a label key", key_tok)
                self.expect_op(")")
                return Has(key_tok.text)
            self.expect_op(")")
            return All() if tok.text == "all" else Global()
        key = tok.text
        op = self.take()
        if op.kind == "op" and op.text in ("==", "!="):
            return Compare(key, op.text, (self.string(),))
        if op.kind == "word" and op.text == "in":
            return Compare(key, "in", self.set())
        if op.kind == "word" and op.text == "not":
            word = self.take()
            if word.kind != "word" or word.text != "in":
                raise self.fail("'in' after 'not'", word)
            return Compare(key, "not in", self.set())
        if op.kind == "word" and op.text == "contains":
            return Compare(key, "contains", (self.string(),))
        if op.kind == "word" and op.text in ("starts", "ends"):
            word = self.take()
            if word.kind != "word" or word.text != "with":
                raise self.fail(f"'with' after '{op.text}'", word)
            return Compare(key, f"{op.text} with", (self.string(),))
        raise self.fail(f"an operator after {key!r} (==, !=, in, not in, contains, starts with, ends with)", op)

    def set(self) -> tuple[str, ...]:
        self.expect_op("{")
        values: list[str] = []
        if self.peek().kind == "op" and self.peek().text == "}":
            self.take()
            return ()
        while True:
            values.append(self.string())
            tok = self.take()
            if tok.kind == "op" and tok.text == "}":
                return tuple(values)
            if tok.kind != "op" or tok.text != ",":
                raise self.fail("',' or '}'", tok)


def parse_selector(text: object) -> Expr:
    """A Calico selector string → expression; SelectorError (exit 2) with the column on a syntax error."""
    if text is None:
        return All()
    if not isinstance(text, str):
        raise SelectorError(f"expected a selector string such as \"app == 'db'\", got {type(text).__name__}")
    return _Parser(text).parse()
