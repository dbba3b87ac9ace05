"""``dspy.utils.inspect_history``: print LM calls the way DSPy's ``inspect_history`` does."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["pretty_print_history"]


def _tool_call_text(call: Any) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    if isinstance(function, dict):
        name, args = function.get("name"), function.get("arguments")
    else:
        name = call.get("name") if isinstance(call, dict) else getattr(call, "name", None)
        args = call.get("arguments", call.get("args")) if isinstance(call, dict) else getattr(call, "args", None)
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    shown = json.dumps(args, ensure_ascii=False) if isinstance(args, (dict, list)) else str(args)
    return f"{name or '<unknown>'}: {shown}"


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return str(part)
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", "")).strip()
    if kind == "image_url":
        url = str(part.get("image_url", {}).get("url", ""))
        head, mark, payload = url.partition("base64,")
        return f"<{head}base64,<IMAGE BASE 64 ENCODED({len(payload)})>" if mark else f"<image_url: {url}>"
    if kind == "input_audio":
        audio = part.get("input_audio", {})
        return f"<audio format='{audio.get('format')}' base64-encoded, length={len(audio.get('data', ''))}>"
    if kind in ("file", "input_file"):
        info: dict[str, Any] = part.get("file") or part.get("input_file") or {}
        return (
            f"<file: name:{info.get('filename', '')}, id:{info.get('file_id', '')}, "
            f"data_length:{len(info.get('file_data', ''))}>"
        )
    return str(part)


def pretty_print_history(history: list[dict[str, Any]], n: int = 1, file: Any = None) -> None:
    """Print the last ``n`` entries of ``history`` as DSPy's ``inspect_history`` does.

    Each entry's messages (text, images, audio and files shown by size, tool calls), then the
    first completion: ``Response:`` with its text when it has text, its tool calls, and how
    many other completions there were. Written to ``file`` without colours, or to stdout with
    them.
    """
    out = file if file is not None else sys.stdout
    colors = file is None

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colors else text

    def print_tool_calls(calls: Any) -> None:
        if calls:
            print(paint("Tool calls:", "31"), file=out)
        for call in calls or []:
            print(paint(_tool_call_text(call), "32"), file=out)

    for entry in history[-n:]:
        print("\n\n\n", file=out)
        print(paint(f"[{entry.get('timestamp', 'Unknown time')}]", "34"), file=out)
        for message in entry.get("messages") or [{"role": "user", "content": entry.get("prompt")}]:
            print(paint(f"{str(message.get('role', 'user')).capitalize()} message:", "31"), file=out)
            content = message.get("content")
            if isinstance(content, str):
                print(content.strip(), file=out)
            elif isinstance(content, list):
                for part in content:
                    print(_part_text(part), file=out)
            print_tool_calls(message.get("tool_calls"))
            print("\n", file=out)
        outputs = entry.get("outputs") or [""]
        first = outputs[0]
        if isinstance(first, dict):
            if first.get("text"):
                print(paint("Response:", "31"), file=out)
                print(paint(str(first["text"]).strip(), "32"), file=out)
            print_tool_calls(first.get("tool_calls"))
        else:
            print(paint("Response:", "31"), file=out)
            print(paint(str(first).strip(), "32"), file=out)
        if len(outputs) > 1:
            print(paint(f" \t (and {len(outputs) - 1} other completions)", "31"), end="", file=out)
    print("\n\n\n", file=out)
