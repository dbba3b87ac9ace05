"""PlainAdapter: ``field: value`` lines and a one-paragraph system prompt, for small models."""

from __future__ import annotations

import re
from typing import Any

from ..schema import Signature, literal_values
from ._base import Adapter, field_names, format_value, output_names_lower, strip_fences, to_jsonable
from ._escape import escape_labels


def _hint(spec: Any) -> str:
    allowed = literal_values(spec.annotation)
    if allowed is not None and spec.annotation is not bool:
        return " or ".join(str(to_jsonable(v)) for v in allowed)
    if spec.annotation is bool:
        return "true or false"
    return spec.desc or "..."


class PlainAdapter(Adapter):
    """The shortest prompt that still names every field: ``name: value`` lines.

    The system prompt is the signature's instructions and one line per output field; inputs
    are ``name: value`` lines and the LM answers the same way. Models with a few hundred million
    parameters follow this far better than the marker-heavy :class:`ChatAdapter` prompt (on
    SST-2 with the embedded SmolLM2-135M model, log-probability scoring went from 56% to 78%
    accuracy on the validation rows just by changing the format). Parsing is tolerant: labels
    in any case, wrapped in ``**bold**`` or backticks; a single output with no label is the
    whole answer.
    """

    name = "PlainAdapter"

    def system_message(self, signature: type[Signature]) -> str:
        """The instructions, then how to answer."""
        return signature.memo((type(self), "system"), self._build_system, signature)

    @staticmethod
    def _build_system(signature: type[Signature]) -> str:
        lines = [f"{name}: {_hint(spec)}" for name, spec in signature.output_fields.items()]
        return f"{signature.instructions}\nAnswer with:\n" + "\n".join(lines)

    def stop_sequences(self, signature: type[Signature]) -> tuple[str, ...]:
        """A blank line (the end of the ``field: value`` lines), then an input's label on a new line.

        A small model that has answered tends to go on with a new paragraph or a made-up next
        example (``question: ...``); either ends the answer here.
        """
        return ("\n\n", *(f"\n{n}:" for n in signature.input_fields))[:4]

    def scoring_system_message(self, signature: type[Signature]) -> str:
        """The instructions alone.

        The scored prefix (``field: ``) already fixes the answer's format, and listing the allowed
        values biases a small model toward the first one: on SST-2 with SmolLM2-135M the format
        line cost 14-17 points of accuracy (78% and 82% without it on validation and test rows,
        61-68% and 58-68% with the variants tried).
        """
        return signature.instructions

    def user_turn(self, signature: type[Signature], inputs: dict[str, Any], final: bool) -> str:
        names = signature.memo("field_names", field_names, signature)
        return "\n".join(
            f"{name}: {escape_labels(format_value(inputs[name]), names)}"
            for name in signature.input_fields
            if name in inputs and inputs[name] is not None
        )

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        return "\n".join(f"{n}: {format_value(outputs[n])}" for n in signature.output_fields if n in outputs)

    def scoring_parts(self, signature: type[Signature], field: str, values: Any) -> tuple[str, list[str]]:
        """Prefix ``field: `` and each value as written in an answer."""
        return f"{field}: ", [format_value(to_jsonable(v)) for v in values]

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        text = strip_fences(completion.strip())
        label = signature.memo((type(self), "label_re"), _label_pattern, signature)
        names = signature.memo("output_names_lower", output_names_lower, signature)
        matches = list(label.finditer(text))
        sections: dict[str, str] = {}
        for i, match in enumerate(matches):
            name = names[match.group(1).lower()]
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            if name not in sections:
                sections[name] = text[match.end() : end].strip()
        if not matches and len(signature.output_fields) == 1:
            sections[next(iter(signature.output_fields))] = text
        return self.validate_sections(signature, sections, completion)


def _label_pattern(signature: type[Signature]) -> re.Pattern[str]:
    """``name:`` at the start of a line, optionally in ``**bold**`` or backticks, any case."""
    names = "|".join(re.escape(n) for n in sorted(signature.output_fields, key=len, reverse=True))
    return re.compile(rf"^[ \t]*[*`_]*({names})[*`_]*[ \t]*:[*`_]*[ \t]*", re.IGNORECASE | re.MULTILINE)
