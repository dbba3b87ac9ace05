"""The seed's example from DESIGN.md, whole: a QA program whose strategy, format and temperature are Variables.

    python examples/qa_program.py [--ray] [--budget 120]

``QAProgram`` answers from a context in three stages: ``preprocess`` tidies the inputs,
``predict`` runs the chosen reasoning strategy (``direct`` = Predict, ``cot`` = ChainOfThought,
``react`` = ReAct with a lookup tool), ``postprocess`` checks the confidence (a failed check is
retried with feedback, then raised) and tidies the answer. ``reasoning_strategy``, ``adapter``
(the prompt format) and ``temperature`` are Variables: ``with_variables`` builds any
configuration, and the optimizer searches them. :func:`main` runs the program, tries each
strategy, optimizes on a few bundled examples, then runs the best program on an executor
(``--ray``: a local Ray cluster; default: asyncio in this process). It runs on the embedded
model by default; ``main(lm=...)`` takes any LM (the tests pass a ``FunctionLM``).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import elixirml as em


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


ENCYCLOPEDIA = {
    "eiffel tower": "The Eiffel Tower is a wrought-iron tower in Paris, France, finished in 1889.",
    "louvre": "The Louvre is the world's most-visited art museum, in Paris, France.",
    "colosseum": "The Colosseum is an ancient amphitheatre in the centre of Rome, Italy.",
    "big ben": "Big Ben is the nickname of the great bell of the clock tower in London, England.",
}


@em.tool
def lookup(term: str) -> str:
    """Look up a place in a small encyclopedia."""
    return ENCYCLOPEDIA.get(term.strip().lower(), f"No entry for {term!r}.")


class QAProgram(em.Program):
    """Answer a question from a context: preprocess, predict, postprocess."""

    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0, setting="temperature")
    reasoning_strategy = em.Variable.module(
        {
            "direct": em.Predict,
            "cot": em.ChainOfThought,
            # ReAct needs its tools: a module option is built from the signature alone, so bind them
            "react": functools.partial(em.ReAct, tools=[lookup], max_iters=3),
        },
        default="cot",
    )
    # the prompt format: JSON (the embedded model's best), or the chat format's field markers
    adapter = em.Variable.choice(["json", "chat"], default="json", description="the prompt format")

    def __init__(self) -> None:
        super().__init__()
        # the module the strategy variable chooses, in the format the adapter variable chooses
        self.predict = self.reasoning_strategy(QA, adapter=self.adapter)

    def preprocess(self, context: str, question: str) -> dict[str, str]:
        """Collapse whitespace; end the question with a question mark."""
        question = " ".join(question.split())
        return {"context": " ".join(context.split()), "question": question.rstrip("?") + "?"}

    def postprocess(self, prediction: em.Prediction) -> em.Prediction:
        """Refuse a low-confidence answer (retried with this feedback, then raised); trim the answer."""
        em.assert_output(prediction.confidence >= 0.5, "Low confidence answer")
        return em.Prediction(answer=prediction.answer.strip().rstrip("."), confidence=prediction.confidence)

    def forward(self, context: str, question: str) -> em.Prediction:
        inputs = self.preprocess(context, question)
        prediction = self.predict(**inputs)  # temperature applied by binding
        return self.postprocess(prediction)


def _example(context: str, question: str, answer: str) -> em.Example:
    return em.Example(context=context, question=question, answer=answer).with_inputs("context", "question")


#: A few questions for the optimizer and the distributed run.
EXAMPLES = [
    _example("The Eiffel Tower is in Paris, France.", "Where is the Eiffel Tower?", "Paris"),
    _example("The Colosseum stands in Rome, Italy.", "In which city is the Colosseum?", "Rome"),
    _example("Big Ben is a bell in London.", "Which city is Big Ben in?", "London"),
    _example("The Louvre, a museum, is in Paris.", "Where is the Louvre?", "Paris"),
    _example("Mount Fuji is the highest mountain in Japan.", "In which country is Mount Fuji?", "Japan"),
    _example("The Danube flows through Vienna and Budapest.", "Name a city on the Danube.", "Vienna"),
]


def answer_match(example: em.Example, prediction: Any, trace: Any = None) -> float:
    """1.0 when the gold answer appears in the predicted answer."""
    return float(example.answer.lower() in str(prediction.answer).lower())


def main(lm: em.LM | None = None, *, executor: Any = "local", budget: int = 120) -> em.Program:
    """Run, vary, optimize and distribute the program; returns the optimized program.

    Args:
        lm: the LM (default: the embedded model, at the program's temperature).
        executor: where the last step runs: ``"local"``, ``"ray"`` or an executor object.
        budget: the most LM calls the optimizer may make.
    """
    with em.context(lm=lm or em.LM("local", max_tokens=256)):
        program = QAProgram()
        # run: by keywords, or with a dict of inputs
        print(program(context="The Eiffel Tower is in Paris, France.", question="Where is the Eiffel Tower"))
        print(program.run({"context": "The Colosseum stands in Rome.", "question": "Where is the Colosseum?"}))
        print(program.variable_space())  # temperature, reasoning_strategy, adapter, every predictor's variables

        # each strategy: with_variables returns a new program built under that choice
        for strategy in ("direct", "cot", "react"):
            variant = program.with_variables(reasoning_strategy=strategy, adapter="chat", temperature=0.1)
            result = variant(context="Big Ben is a bell in London.", question="Which city is Big Ben in?")
            print(f"{strategy}: {type(variant.predict).__name__} -> {result.answer!r} ({result.confidence})")
        print("original still", type(program.predict).__name__, program.adapter, program.temperature)

        # optimize: strategy, format, temperature and demos, within a hard budget of LM calls
        optimizer = em.optimizers.RandomSearch(answer_match, num_candidates=4, max_bootstrapped_demos=1, seed=0)
        best = optimizer.compile(program, trainset=EXAMPLES[:3], valset=EXAMPLES[3:], max_lm_calls=budget)
        chosen = {k: v for k, v in best.configuration().items() if not k.endswith(("demos", "instructions"))}
        print("best configuration:", chosen, "score", optimizer.last_result.best_score)

        # a distributed run: the program's predictions for a dataset, in input order
        predictions = em.distributed.run(best, EXAMPLES, executor=executor)
        for example, prediction in zip(EXAMPLES, predictions, strict=True):
            print(f"{example.question} -> {prediction.answer!r}")
        return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray", action="store_true", help="run the last step on a local Ray cluster")
    parser.add_argument("--budget", type=int, default=120, help="the optimizer's LM-call budget")
    args = parser.parse_args()
    # Ray workers import the program's class by its module, and `__main__` is not one: use this
    # file imported as the module `qa_program` (its folder is on sys.path when run as a script)
    import qa_program

    executor: Any = "local"
    if args.ray:  # the workers get this folder, so they can import `qa_program`, and build their own model
        here = str(Path(__file__).resolve().parent)
        lm = functools.partial(em.LM, "local", max_tokens=256, n_threads=1)
        executor = em.RayExecutor(num_workers=2, lm=lm, runtime_env={"working_dir": here})
    try:
        qa_program.main(executor=executor, budget=args.budget)
    finally:
        if args.ray:
            executor.shutdown()
