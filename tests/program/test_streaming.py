"""em.streamify: field chunks and status events before the prediction; the JSON stream parser."""

import asyncio
import json

import elixirml as em


def test_streamify_yields_field_chunks_before_the_prediction():
    for adapter in (em.ChatAdapter(), em.JSONAdapter()):
        lm = em.DummyLM([{"reasoning": "think it through", "answer": "Paris is the answer"}], stream_chunk=3)
        stream = em.streamify(em.ChainOfThought("question -> answer", lm=lm, adapter=adapter))

        async def main(stream=stream):
            return [event async for event in stream(question="Where?")]

        events = asyncio.run(main())
        assert isinstance(events[-1], em.Prediction) and events[-1].answer == "Paris is the answer"
        chunks = [e for e in events if isinstance(e, em.FieldChunk)]
        assert len(chunks) > 3
        assert "".join(c.text for c in chunks if c.field == "answer").strip() == "Paris is the answer"
        assert "".join(c.text for c in chunks if c.field == "reasoning").strip() == "think it through"
        statuses = [e.kind for e in events if isinstance(e, em.StatusEvent)]
        assert statuses == ["module_start", "module_end"]


def test_json_stream_parser_handles_nested_values():
    from elixirml.adapters._stream import JSONStreamParser

    parser = JSONStreamParser(["items", "note"])
    text = json.dumps({"items": ["a", "b"], "note": 'he said "hi"\nok'})
    pieces = []
    for i in range(0, len(text), 2):
        pieces.extend(parser.feed(text[i : i + 2]))
    by_field = {}
    for field, piece in pieces:
        by_field[field] = by_field.get(field, "") + piece
    assert json.loads(by_field["items"]) == ["a", "b"]
    assert by_field["note"] == 'he said "hi"\nok'
