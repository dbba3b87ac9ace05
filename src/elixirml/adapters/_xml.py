"""XMLAdapter: fields as ``<name>value</name>`` elements (DSPy's ``XMLAdapter``)."""

from __future__ import annotations

import re
from typing import Any

from ..schema import Signature
from ._base import field_names, format_value, output_names_lower, strip_fences, type_hint
from ._chat import ChatAdapter
from ._escape import escape_tags

_ELEMENT_RE = re.compile(r"<([^\W\d]\w*)>(.*?)</\1\s*>", re.DOTALL)


def _element(name: str, value: str) -> str:
    return f"<{name}>\n{value}\n</{name}>"


class XMLAdapter(ChatAdapter):
    """Prompts and answers with one XML element per field, as DSPy's ``XMLAdapter``.

    Parsing takes the first ``<field>...</field>`` element of each output field (tag case is
    ignored; a surrounding markdown fence is stripped). When the signature has a single output
    field and the answer has no elements at all, the whole answer is that field's value.
    """

    name = "XMLAdapter"

    def _build_system(self, signature: type[Signature]) -> str:
        structure = [_element(name, f"{{{name}}}") for name in signature.input_fields]
        for name, spec in signature.output_fields.items():
            hint = type_hint(spec)
            structure.append(
                _element(name, f"{{{name}}}") + (f"        # note: the value you produce {hint}" if hint else "")
            )
        lines = [
            f"Your input fields are: {', '.join(f'`{n}`' for n in signature.input_fields)}.",
            f"Your output fields are: {', '.join(f'`{n}`' for n in signature.output_fields)}.",
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            "",
            "\n\n".join(structure),
            "",
            f"In adhering to this structure, your objective is: {signature.instructions}",
        ]
        return "\n".join(lines)

    def stop_sequences(self, signature: type[Signature]) -> tuple[str, ...]:
        """An input's opening tag (the model starting a new example); outputs are closed by their own tags."""
        return tuple(f"<{n}>" for n in signature.input_fields)[:4]

    def user_turn(self, signature: type[Signature], inputs: dict[str, Any], final: bool) -> str:
        names = signature.memo("field_names", field_names, signature)
        text = "\n\n".join(
            _element(name, escape_tags(format_value(inputs[name]), names))
            for name in signature.input_fields
            if name in inputs and inputs[name] is not None
        )
        if final:
            outputs = ", then ".join(f"`<{n}>`" for n in signature.output_fields)
            text += f"\n\nRespond with the corresponding output fields wrapped in XML tags {outputs}."
        return text

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        return "\n\n".join(_element(n, format_value(outputs[n])) for n in signature.output_fields if n in outputs)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        text = completion.strip()
        if "```" in text:
            text = strip_fences(text)
        names = signature.memo("output_names_lower", output_names_lower, signature)
        sections: dict[str, str] = {}
        found = False
        for match in _ELEMENT_RE.finditer(text):
            found = True
            name = names.get(match.group(1).lower())
            if name is not None and name not in sections:
                sections[name] = match.group(2).strip()
        if not found and len(signature.output_fields) == 1:
            sections[next(iter(signature.output_fields))] = text
        return self.validate_sections(signature, sections, completion)
