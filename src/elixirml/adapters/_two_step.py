"""TwoStepAdapter: a free-form answer first, then a second LM extracts the fields (DSPy's ``TwoStepAdapter``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..lm import LM, LMResponse, Message
from ..schema import InputField, Signature, make_signature
from ._base import Adapter, describe_fields, field_names, format_value
from ._chat import ChatAdapter
from ._escape import escape_labels


def _extraction_signature(signature: type[Signature]) -> type[Signature]:
    fields: dict[str, Any] = {"text": (str, InputField(desc="an answer written in free form"))}
    fields.update({name: (spec.annotation, spec) for name, spec in signature.output_fields.items()})
    return make_signature(
        fields,
        "The text answers a task. Extract the values of the output fields from it, each in its required form.",
        name=f"{signature.__name__}Extraction",
    )


class TwoStepAdapter(Adapter):
    """Ask the task's LM in plain words, then have ``extraction_model`` pull the fields out.

    For models that reason well but follow output formats poorly (reasoning models): the first
    request states the task, the inputs and the outputs wanted, and takes the answer as it
    comes; the second sends that answer to ``extraction_model`` with the :class:`ChatAdapter`
    and a signature of the same output fields, validated as always. Both requests are made
    (and counted) every call; each completion of the first is extracted on its own.

    Args:
        extraction_model: the LM that extracts the fields (a small, format-following model).
        **kwargs: as for :class:`Adapter`.
    """

    name = "TwoStepAdapter"

    def __init__(self, extraction_model: LM, **kwargs: Any) -> None:
        if extraction_model is None or not callable(getattr(extraction_model, "arequest", None)):
            raise ConfigurationError(
                "TwoStepAdapter(extraction_model=em.LM(...)) needs the LM that extracts the fields"
            )
        super().__init__(**kwargs)
        self.extraction_model = extraction_model
        self.extractor = ChatAdapter()

    def system_message(self, signature: type[Signature]) -> str:
        return signature.memo((type(self), "system"), self._build_system, signature)

    @staticmethod
    def _build_system(signature: type[Signature]) -> str:
        return (
            f"{signature.instructions}\n\nYou are given:\n{describe_fields(signature.input_fields)}\n"
            f"Answer with:\n{describe_fields(signature.output_fields)}"
        )

    def user_turn(self, signature: type[Signature], inputs: dict[str, Any], final: bool) -> str:
        names = signature.memo("field_names", field_names, signature)
        return "\n".join(
            f"{name}: {escape_labels(format_value(inputs[name]), names)}"
            for name in signature.input_fields
            if name in inputs
        )

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        return "\n".join(f"{n}: {format_value(outputs[n])}" for n in signature.output_fields if n in outputs)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        raise ConfigurationError(
            "TwoStepAdapter parses through its extraction model; call it through a module (or adapter.acall)"
        )

    async def _send_and_parse(
        self,
        lm: LM,
        signature: type[Signature],
        messages: list[Message],
        request: dict[str, Any],
        callbacks: Sequence[Any],
    ) -> tuple[list[dict[str, Any]], LMResponse]:
        """The free-form request, then one extraction per completion (each validated as always)."""
        response = await lm.arequest(messages, settings=request)  # merged by the predictor: not merged again
        extraction = signature.memo((type(self), "extraction"), _extraction_signature, signature)
        outputs = []
        for completion in response.completions:
            extracted, _, _ = await self.extractor.acall(
                self.extraction_model, extraction, [], {"text": completion.text}, {}
            )
            outputs.append(extracted[0])
        return outputs, response
