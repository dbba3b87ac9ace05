"""Turn type expressions written as text ("list[str]", "Literal['a', 'b']") into types.

Parsing walks Python's AST with a whitelist; nothing is ever evaluated, so a signature
string (or a saved program) cannot run code.
"""

from __future__ import annotations

import ast
import datetime
import sys
import types
import typing
from typing import Any, Literal, Optional, Union

from ..errors import SignatureError, truncate

_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "Any": Any,
    "None": type(None),
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Set": set,
    "date": datetime.date,
    "datetime": datetime.datetime,
}
#: The rich types (Pydantic models, in ``_media``), added to the names where a type mentions one.
_MEDIA_NAMES = ("Image", "History", "ToolCalls", "Code")


def parse_type(text: str, extra: dict[str, Any] | None = None, *, caller_scope: bool = False) -> Any:
    """Parse a type expression such as ``"list[str]"`` or ``"int | None"``.

    Args:
        text: the expression.
        extra: more names that may appear (for example the user's Pydantic models).
        caller_scope: also look names up in the scope of the code that called into ElixirML
            (its local, then global variables), as DSPy's string signatures do. A name found
            there must be a type, or a module or class for a dotted name (``decimal.Decimal``,
            ``Outer.Inner``); the lookup reads the namespaces only, it never calls or evaluates anything.

    Raises:
        SignatureError: the expression uses syntax or names outside the whitelist.
    """
    names = dict(_NAMES)
    if any(name in text for name in _MEDIA_NAMES):
        from . import _media

        names.update({name: getattr(_media, name) for name in _MEDIA_NAMES})
    if extra:
        names.update(extra)
    shown = truncate(text, 80)
    if len(text) > MAX_TYPE_CHARS:
        raise SignatureError(f"Type {shown} is {len(text)} characters long; the limit is {MAX_TYPE_CHARS}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SignatureError(f"Cannot parse type {shown}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise SignatureError(f"Type {shown} is nested too deeply to parse") from None
    depth = _depth(tree.body)
    if depth > MAX_TYPE_DEPTH:
        raise SignatureError(f"Type {shown} is nested {depth} levels deep; the limit is {MAX_TYPE_DEPTH}")
    if caller_scope:
        names.update(_names_from_caller(tree.body, names, text))
    result = _convert(tree.body, names, text)
    if not _is_type(result):
        raise SignatureError(f"{shown} is not a type; write a type such as str, int or list[str]")
    return result


#: Longest type expression accepted, and deepest nesting (``int | str | ...`` chains count one per ``|``).
MAX_TYPE_CHARS = 2000
MAX_TYPE_DEPTH = 64


def _depth(root: ast.AST) -> int:
    """Nesting depth of an expression tree, walked without recursion."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level <= MAX_TYPE_DEPTH:
            stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _caller_frame() -> types.FrameType | None:
    """The innermost frame outside ElixirML: the code that built the signature."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module != "elixirml" and not module.startswith("elixirml."):
            return frame
        frame = frame.f_back
    return None


def _names_from_caller(root: ast.expr, known: dict[str, Any], text: str) -> dict[str, Any]:
    """The types that the unknown names (and dotted names) of ``root`` have in the caller's scope.

    Only namespaces are read (the frame's locals, then its globals, then modules' ``__dict__``):
    no attribute hook, property or call runs. Names not found are left for ``_convert`` to report.
    """
    wanted: set[str] = set()
    for node in ast.walk(root):
        if isinstance(node, ast.Attribute):
            try:
                wanted.add(_dotted(node))
            except SignatureError:
                continue  # _convert reports it
        elif isinstance(node, ast.Name) and node.id not in known:
            wanted.add(node.id)
    wanted -= set(known)
    if not wanted:
        return {}
    frame = _caller_frame()
    if frame is None:
        return {}
    scopes = (frame.f_locals, frame.f_globals)
    del frame  # no reference cycle through the frame
    found: dict[str, Any] = {}
    for dotted in sorted(wanted):
        head, *rest = dotted.split(".")
        value = next((scope[head] for scope in scopes if head in scope), _MISSING)
        for attr in rest:  # a module's attribute, or a class nested in a class (``Outer.Inner``)
            if not isinstance(value, (types.ModuleType, type)):
                value = _MISSING
                break
            value = vars(value).get(attr, _MISSING)
        if value is _MISSING:
            continue
        if isinstance(value, types.ModuleType) and any(d.startswith(dotted + ".") for d in wanted):
            continue  # a module on the way to a longer dotted name
        if not (_is_type(value) or any(value is form for form in (Literal, Optional, Union))):
            raise SignatureError(
                f"{dotted!r} in {truncate(text.strip(), 80)} names {type(value).__name__} {truncate(repr(value), 60)} "
                "in the calling code, not a type; write a type such as str, list[str] or a class."
            )
        found[dotted] = value
    return found


_MISSING = object()


def _is_type(value: Any) -> bool:
    """Whether a converted expression is usable as an annotation (not a bare constant)."""
    return isinstance(value, type) or value is Any or typing.get_origin(value) is not None


def _convert(node: ast.expr, names: dict[str, Any], text: str, *, in_tuple: bool = False) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in names:
            known = ", ".join(sorted(names))
            raise SignatureError(
                f"Unknown type name {node.id!r} in {text!r}. Known names: {known}. "
                "Import the type where the string signature is built, pass custom_types=, "
                "or use the class form of Signature."
            )
        return names[node.id]
    if isinstance(node, ast.Attribute):
        dotted = _dotted(node)
        if dotted in names:
            return names[dotted]
        short = dotted.rsplit(".", 1)[-1]
        if dotted.startswith(("typing.", "t.")) and short in names:
            return names[short]
        raise SignatureError(f"Unknown type name {dotted!r} in {text!r}")
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        if node.value is Ellipsis and in_tuple:
            return Ellipsis
        raise SignatureError(
            f"{node.value!r} is not a type (in {truncate(text.strip(), 80)}); constants belong in Literal[...] only"
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left = _convert(node.left, names, text)
        right = _convert(node.right, names, text)
        return Union[left, right]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        base = _convert(node.value, names, text)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        if base is Literal:
            values = []
            for item in items:
                if not isinstance(item, ast.Constant):
                    raise SignatureError(f"Literal[...] takes constants only, in {text!r}")
                values.append(item.value)
            return Literal.__getitem__(tuple(values))
        if not items:
            raise SignatureError(f"Empty type arguments in {truncate(text, 80)}; write e.g. tuple[str, int]")
        # ``...`` only as the second argument of tuple: tuple[int, ...]
        args = tuple(
            _convert(item, names, text, in_tuple=base is tuple and i == 1 and len(items) == 2)
            for i, item in enumerate(items)
        )
        try:
            return base[args] if len(args) > 1 else base[args[0]]
        except TypeError as exc:
            raise SignatureError(f"Invalid type {text!r}: {exc}") from None
    raise SignatureError(f"Unsupported syntax in type {text!r}")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise SignatureError("Unsupported attribute expression in a type")


def type_to_str(tp: Any) -> str:
    """Render a type the way :func:`parse_type` reads it back (for saved programs)."""
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if tp is Any:
        return "Any"
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", repr(tp))
    args = typing.get_args(tp)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_to_str(a) for a in args)
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[" + ", ".join(type_to_str(a) for a in args) + "]"


def allows_none(annotation: Any) -> bool:
    """Whether ``None`` is a value of the type (``None``, ``Optional[T]``, ``T | None``)."""
    if annotation is type(None) or annotation is None:
        return True
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(allows_none(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return allows_none(typing.get_args(annotation)[0])
    return False


def value_has_type(value: Any, annotation: Any) -> bool:
    """Whether ``value`` already is of type ``annotation``, checked as DSPy checks a predictor's inputs.

    Nothing is converted: ``"3"`` is not an ``int`` and ``["1"]`` is not a ``list[int]``, though
    validation would convert both. Containers are checked item by item (``list``, ``dict``,
    ``tuple`` with a fixed length or ``tuple[T, ...]``, ``set``); ``Literal`` by its values;
    unions by any member; a list of texts counts as a ``str`` (numbered passages), an ``int`` as
    a ``float``. A form this cannot check (a generic class, ``Annotated``'s metadata) counts as a match.
    """
    if type(value) is annotation or annotation is Any or annotation is None:
        return True
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is None:
        if not isinstance(annotation, type):
            return True
        if annotation is str and isinstance(value, list):
            return all(isinstance(item, str) for item in value)
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            return True
        return isinstance(value, annotation)
    args = typing.get_args(annotation)
    if origin is Union or origin is types.UnionType:
        return any(value_has_type(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin is typing.Annotated:
        return value_has_type(value, args[0])
    if origin in (list, set, frozenset):
        return isinstance(value, origin) and (not args or all(value_has_type(item, args[0]) for item in value))
    if origin is dict:
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(
            value_has_type(key, args[0]) and value_has_type(item, args[1]) for key, item in value.items()
        )
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(value_has_type(item, args[0]) for item in value)
        return not args or (len(value) == len(args) and all(value_has_type(v, a) for v, a in zip(value, args)))
    return isinstance(value, origin) if isinstance(origin, type) else True


def literal_values(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a closed-set type (``Literal``, ``Enum``, ``bool``), else None."""
    import enum

    if tp is bool:
        return (True, False)
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(member.value for member in tp)
    return None


def field_marker(name: str) -> str:
    """The marker that introduces a field's value in chat-formatted prompts and answers."""
    return f"[[ ## {name} ## ]]"
