"""ChatAdapter: fields delimited by ``[[ ## name ## ]]`` markers."""

from __future__ import annotations

import re
from typing import Any

from ..schema import Signature, field_marker
from ._base import Adapter, describe_fields, format_value, output_names_lower, strip_fences, type_hint

# A name starts with a letter or "_", in any script ("вопрос -> ответ" is a signature too).
_MARKER_RE = re.compile(r"\[\[\s*#+\s*([^\W\d][\w ]*?)\s*#+\s*\]\]", re.IGNORECASE)


class ChatAdapter(Adapter):
    """Prompts with one ``[[ ## field ## ]]`` marker per field; demos are alternating turns.

    Parsing is tolerant: marker case and spacing, a surrounding markdown fence, and a missing
    ``[[ ## completed ## ]]`` marker are all accepted. When the signature has a single output
    field and the answer has no markers at all, the whole answer is that field's value.
    """

    name = "ChatAdapter"

    def system_message(self, signature: type[Signature]) -> str:
        """The system prompt: fields, the answer structure, and the instructions."""
        return signature.memo((type(self), "system"), self._build_system, signature)

    def _build_system(self, signature: type[Signature]) -> str:
        structure = []
        for name in signature.input_fields:
            structure.append(f"{field_marker(name)}\n{{{name}}}")
        for name, spec in signature.output_fields.items():
            hint = type_hint(spec)
            structure.append(
                f"{field_marker(name)}\n{{{name}}}" + (f"        # note: the value you produce {hint}" if hint else "")
            )
        structure.append(field_marker("completed"))
        return (
            f"Your input fields are:\n{describe_fields(signature.input_fields)}\n"
            f"Your output fields are:\n{describe_fields(signature.output_fields)}\n"
            "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
            + "\n\n".join(structure)
            + f"\n\nIn adhering to this structure, your objective is: {signature.instructions}"
        )

    def stop_sequences(self, signature: type[Signature]) -> tuple[str, ...]:
        """The ``completed`` marker, then the markers of the inputs (the model starting a new example)."""
        return (field_marker("completed"), *(field_marker(n) for n in signature.input_fields))[:4]

    def user_turn(self, signature: type[Signature], inputs: dict[str, Any], final: bool) -> str:
        text = self._format_inputs(signature, inputs)
        if final:
            text += signature.memo((type(self), "reminder"), self._build_reminder, signature)
        return text

    @staticmethod
    def _build_reminder(signature: type[Signature]) -> str:
        outputs = ", then ".join(f"`{field_marker(n)}`" for n in signature.output_fields)
        return (
            f"\n\nRespond with the corresponding output fields, starting with the field {outputs}, "
            f"and then ending with the marker for `{field_marker('completed')}`."
        )

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        """Render output values the way the LM is asked to answer."""
        parts = [f"{field_marker(n)}\n{format_value(outputs[n])}" for n in signature.output_fields if n in outputs]
        parts.append(field_marker("completed"))
        return "\n\n".join(parts)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        text = completion.strip()
        if "```" in text:
            text = strip_fences(text)
        names = signature.memo("output_names_lower", output_names_lower, signature)
        # [text before, marker name, its section, marker name, its section, ...]
        pieces = _MARKER_RE.split(text)
        sections: dict[str, str] = {}
        for i in range(1, len(pieces), 2):
            name = names.get(pieces[i].strip().lower().replace(" ", "_"))
            if name is not None and name not in sections:
                section = pieces[i + 1].strip()
                reads_own = hasattr(signature.output_fields[name].annotation, "from_completion_text")  # em.Code
                sections[name] = strip_fences(section) if "```" in section and not reads_own else section
        if len(pieces) == 1 and len(signature.output_fields) == 1:
            sections[next(iter(signature.output_fields))] = text
        return self.validate_sections(signature, sections, completion)
