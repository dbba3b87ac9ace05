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
    return f"{name}: {json.dumps(args) if not isinstance(args, str) else args}"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url", {}).get("url", "")
                parts.append(f"<image_url: {url[:60]}>")
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return "" if content is None else str(content)


def pretty_print_history(history: list[dict[str, Any]], n: int = 1, file: Any = None) -> None:
    """Print the last ``n`` entries of ``history`` (messages, tool calls and the response) to ``file``."""
    out = file if file is not None else sys.stdout
    for entry in history[-n:]:
        print(f"\n\n\x1b[34m[{entry.get('timestamp', '')}]\x1b[0m\n", file=out)
        for message in entry.get("messages") or [{"role": "user", "content": entry.get("prompt")}]:
            role = str(message.get("role", "user"))
            print(f"\x1b[31m{role.capitalize()} message:\x1b[0m\n", file=out)
            text = _content_text(message.get("content"))
            if text:
                print(text.strip(), file=out)
            if message.get("tool_calls"):
                print("Tool calls:", file=out)
                for call in message["tool_calls"]:
                    print(_tool_call_text(call), file=out)
            print(file=out)
        print("\x1b[31mResponse:\x1b[0m\n", file=out)
        for i, output in enumerate(entry.get("outputs") or []):
            if len(entry["outputs"]) > 1:
                print(f"\x1b[31mChoice {i + 1}:\x1b[0m", file=out)
            if isinstance(output, dict):
                if output.get("text"):
                    print(f"\x1b[32m{str(output['text']).strip()}\x1b[0m", file=out)
                if output.get("tool_calls"):
                    print("Tool calls:", file=out)
                    for call in output["tool_calls"]:
                        print(_tool_call_text(call), file=out)
            else:
                print(f"\x1b[32m{str(output).strip()}\x1b[0m", file=out)
        print("\n\n", file=out)
