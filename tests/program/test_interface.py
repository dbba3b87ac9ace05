"""interface_of: what a program takes and returns, read from its signature, schemas and the source of forward."""

import pydantic
import pytest

import elixirml as em
from elixirml.program import interface_of


def outputs(program):
    return interface_of("p", program).output_names


class Answer(em.Signature):
    """Answer."""

    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


def test_a_module_returning_its_predictors_prediction_has_that_predictors_outputs():
    class Dspyish(em.Module):
        def __init__(self):
            super().__init__()
            self.prog = em.ChainOfThought("question -> answer")

        def forward(self, question):
            return self.prog(question=question)

    assert outputs(Dspyish()) == ("reasoning", "answer")


def test_fields_follow_local_names_awaits_dict_literals_and_helper_methods():
    class Two(em.Module):
        def __init__(self):
            super().__init__()
            self.draft = em.Predict("question -> draft")
            self.final = em.Predict(Answer)

        async def aforward(self, question: str, k: int = 3):
            first = await self.draft.acall(question=question)
            second = await self.final.acall(question=first.draft)
            return self.pack(second, note=f"k={k}")

        def pack(self, prediction, note):
            return {"answer": prediction.answer.strip(), "confidence": prediction.confidence, "note": note}

    interface = interface_of("two", Two())
    assert interface.input_names == ("question", "k") and interface.required == ("question",)
    assert interface.output_names == ("answer", "confidence", "note")
    properties = interface.output_schema()["properties"]
    assert properties["answer"]["type"] == "string" and properties["note"]["type"] == "string"
    assert properties["confidence"] == {"maximum": 1.0, "minimum": 0.0, "title": "Confidence", "type": "number"}


def test_outputs_the_source_does_not_say_are_unknown_not_guessed():
    class Spread(em.Module):
        def __init__(self):
            super().__init__()
            self.a = em.Predict("q -> a")

        def forward(self, **kwargs):
            return em.Prediction(**self.a(**kwargs))

    class TwoShapes(em.Module):
        def __init__(self):
            super().__init__()
            self.a = em.Predict("q -> a")

        def forward(self, q):
            if not q:
                return {"empty": True}
            return self.a(q=q)

    class Loop(em.Module):
        def forward(self, q):
            value = {"a": q}
            value = self.step(value)
            return value

        def step(self, value):
            return self.step(value)

    class Private(em.Module):
        def forward(self, q):
            return {"_debug": q, "answer": q}

    class PydanticName(em.Module):  # a name pydantic keeps for itself: pydantic raised ValueError
        def forward(self, q):
            return {"model_dump": q, "answer": q}

    for program in (Spread(), TwoShapes(), Loop(), Private(), PydanticName()):
        interface = interface_of("p", program)
        assert interface.output_names == () and interface.output_model is None
        assert interface.output_schema() == {"type": "object", "title": "Outputs"}


def test_declared_schemas_and_return_annotations_win():
    class Out(pydantic.BaseModel):
        label: str
        score: float

    class Annotated(em.Module):
        def __init__(self):
            super().__init__()
            self.a = em.Predict("q -> a")

        def forward(self, q: str) -> Out:
            return Out(label=self.a(q=q).a, score=1.0)

    class Declared(em.Program):
        output_schema = Answer

        def __init__(self):
            super().__init__()
            self.a = em.Predict("question -> a")

        def forward(self, question):
            return self.a(question=question)

    assert outputs(Annotated()) == ("label", "score")
    assert outputs(Declared()) == ("answer", "confidence")


def test_wrapping_modules_take_the_inputs_of_the_signature_they_stand_for():
    react = em.ReAct("question -> answer", tools=[em.tool(lambda term: term, name="echo")])
    best = em.BestOfN(em.Predict("question, context -> answer"), N=2, reward_fn=lambda a, p: 1.0, threshold=1.0)
    assert interface_of("r", react).input_names == ("question",) and outputs(react) == ("answer",)
    assert interface_of("b", best).input_names == ("question", "context") and outputs(best) == ("answer",)
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        interface_of("r", react).validate({"question": "q", "qestion": "typo"})


def test_a_class_without_source_has_unknown_outputs():
    namespace = {"em": em}
    exec(  # no file behind it: inspect cannot read the source
        "class NoSource(em.Module):\n"
        "    def __init__(self):\n"
        "        self.a = em.Predict('q -> a')\n"
        "    def forward(self, q: str):\n"
        "        return self.a(q=q)\n",
        namespace,
    )
    interface = interface_of("n", namespace["NoSource"]())
    assert interface.input_names == ("q",) and interface.output_names == ()
