"""The seed's example from DESIGN.md, as written, on the embedded local model.

Run: .venv/bin/python examples/qa_program.py
"""

import elixirml as em

em.configure(lm=em.LM("local"))


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


class QAProgram(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0, setting="temperature")
    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

    def __init__(self):
        super().__init__()
        self.answer = self.strategy(QA)  # the module class the variable currently chooses

    def forward(self, context: str, question: str):
        pred = self.answer(context=context, question=question)  # temperature applied by binding
        em.assert_output(pred.confidence >= 0.5, "Low confidence answer")  # retried, then raised
        return pred


program = QAProgram()
result = program(context="The Eiffel Tower is in Paris, France.", question="Where is the Eiffel Tower?")
print(result)
print(program.variable_space())  # temperature, strategy, and every predictor's instructions/demos

direct = program.with_variables(strategy="direct", temperature=0.1)
print(type(direct.answer).__name__, direct.temperature, "| original still", type(program.answer).__name__)
print(direct(context="The Eiffel Tower is in Paris, France.", question="Where is the Eiffel Tower?"))
