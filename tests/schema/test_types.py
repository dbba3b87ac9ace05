"""Rich field types: em.Image, em.History, em.ToolCalls, em.Code."""

from __future__ import annotations

import io
import json

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError
from elixirml.lm._anthropic import split_system
from elixirml.testing import FakeLMServer

PNG = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 24
SQL = em.Code["sql"]


def image_parts(messages):
    return [p for m in messages if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]


# ---------------------------------------------------------------------- Image
def test_image_from_each_kind_of_source(tmp_path):
    path = tmp_path / "cat.jpg"
    path.write_bytes(JPEG)
    assert em.Image(PNG).mime_type == "image/png" and em.Image(PNG).data == PNG
    assert em.Image.from_bytes(PNG) == em.Image(PNG)
    assert em.Image(str(path)).mime_type == "image/jpeg" and em.Image.from_file(path) == em.Image(path)
    assert em.Image("https://example.org/cat.png").url == "https://example.org/cat.png"
    assert em.Image.from_url("https://example.org/cat.png").mime_type is None
    assert em.Image(url=em.Image(PNG).url) == em.Image(PNG)
    from PIL import Image as PILImage

    picture = PILImage.new("RGB", (2, 2), "red")
    image = em.Image.from_PIL(picture)
    assert image.mime_type == "image/png" and PILImage.open(io.BytesIO(image.data)).size == (2, 2)
    assert len(repr(image)) < 120  # never the whole base64 text
    payload = em.Image(PNG).url.partition("base64,")[2]
    assert repr(em.Image(PNG)) == f"Image(url=data:image/png;base64,<IMAGE_BASE_64_ENCODED({len(payload)})>)"
    assert repr(em.Image("https://example.org/cat.png")) == "Image(url='https://example.org/cat.png')"


def test_image_refuses_what_is_not_an_image(tmp_path):
    with pytest.raises(ConfigurationError, match="no such file"):
        em.Image(str(tmp_path / "missing.png"))
    with pytest.raises(ConfigurationError, match="not a PNG, JPEG"):
        em.Image(b"plain text")
    with pytest.raises(ConfigurationError, match="takes a URL"):
        em.Image(42)
    with pytest.raises(Exception, match="http"):
        em.Image(url="ftp://example.org/x.png")


def test_image_is_sent_as_openai_image_parts_and_shows_in_traces():
    with FakeLMServer(lambda body: "[[ ## answer ## ]]\na red square\n\n[[ ## completed ## ]]") as server:
        lm = em.LM("openai/vision", base_url=server.base_url, api_key="k", cache=False)
        describe = em.Predict("image: Image, question -> answer")
        describe.set_lm(lm)
        with em.trace() as entries:
            pred = describe(image=em.Image(PNG), question="What is it?")
        assert pred.answer == "a red square"
        sent = server.requests[0]["messages"]
        assert image_parts(sent) == [{"type": "image_url", "image_url": {"url": em.Image(PNG).url}}]
        assert "[[image:" not in json.dumps(sent)  # the marker became the part itself
        user = sent[-1]["content"]
        assert user[0] == {"type": "text", "text": "[[ ## image ## ]]\n"} and "What is it?" in user[2]["text"]
        assert entries[0].inputs["image"] == em.Image(PNG)


def test_a_list_of_images_and_images_in_demos_survive_save_and_load(tmp_path):
    other = em.Image(JPEG)
    classify = em.Predict("images: list[Image] -> label")
    classify.demos = [em.Example(images=[other], label="cat")]
    classify.save(tmp_path / "p.json")
    restored = em.Predict("images: list[Image] -> label").load(tmp_path / "p.json")
    lm = em.DummyLM([{"label": "dog"}])
    restored.set_lm(lm)
    assert restored(images=[em.Image(PNG), em.Image(PNG)]).label == "dog"
    urls = [p["image_url"]["url"] for p in image_parts(lm.requests[0]["messages"])]
    assert urls == [other.url, em.Image(PNG).url, em.Image(PNG).url]


def test_anthropic_gets_image_blocks():
    messages = [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": em.Image(PNG).url}},
                {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}},
            ],
        },
    ]
    system, turns = split_system(messages)
    assert system == "sys"
    blocks = turns[0]["content"]
    assert blocks[0] == {"type": "text", "text": "look"}
    assert blocks[1]["source"]["type"] == "base64" and blocks[1]["source"]["media_type"] == "image/png"
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}}


def test_an_lm_that_cannot_take_images_refuses_them():
    lm = em.LM("local")
    assert lm.supports_images is False
    describe = em.Predict("image: Image -> answer")
    describe.set_lm(lm)
    with pytest.raises(ConfigurationError, match="cannot take images"):
        describe(image=em.Image(PNG))


# ---------------------------------------------------------------------- History
def test_history_is_rendered_as_prior_turns():
    history = em.History(messages=[{"question": "2+2?", "answer": "4"}, {"question": "times 3?", "answer": "12"}])
    lm = em.DummyLM([{"answer": "13"}, {"answer": "again"}])
    chat = em.Predict("history: History, question -> answer")
    chat.set_lm(lm)
    assert chat(history=history, question="plus one?").answer == "13"
    turns = lm.requests[0]["messages"][1:]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert "2+2?" in turns[0]["content"] and "4" in turns[1]["content"] and "12" in turns[3]["content"]
    assert "history" not in turns[-1]["content"] and "plus one?" in turns[-1]["content"]
    assert chat(history={"messages": []}, question="again") is not None  # a dict validates too


# ---------------------------------------------------------------------- ToolCalls
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}


def test_tool_calls_are_filled_from_native_tool_calls():
    def answer(body):
        assert body["tools"] == [SEARCH]
        return {
            "content": "[[ ## note ## ]]\nlooking it up",
            "tool_calls": [{"name": "search", "arguments": {"q": "x"}}],
        }

    with FakeLMServer(answer) as server:
        lm = em.LM("openai/tools", base_url=server.base_url, api_key="k", cache=False)
        plan = em.Predict("question -> note, calls: ToolCalls", config={"tools": [SEARCH]})
        plan.set_lm(lm)
        pred = plan(question="find x")
    assert pred.note == "looking it up"
    assert pred.calls == em.ToolCalls(tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "call_0_0"}])
    assert pred.calls.tool_calls[0].name == "search"


def test_tool_calls_are_parsed_from_text_without_native_calls():
    lm = em.DummyLM(['[[ ## calls ## ]]\n[{"name": "search", "args": {"q": "y"}}]\n\n[[ ## completed ## ]]'])
    plan = em.Predict("question -> calls: ToolCalls")
    plan.set_lm(lm)
    calls = plan(question="find y").calls
    assert [(c.name, c.args) for c in calls.tool_calls] == [("search", {"q": "y"})]
    assert "JSON list of tool calls" in lm.requests[0]["messages"][0]["content"]


# ---------------------------------------------------------------------- Code
def test_code_output_has_its_fences_stripped_and_its_language():
    lm = em.DummyLM(["[[ ## code ## ]]\n```python\ndef f():\n    return 1\n```\n\n[[ ## completed ## ]]"])
    write = em.Predict("task -> code: Code")
    write.set_lm(lm)
    code = write(task="f returns 1").code
    assert code == em.Code(code="def f():\n    return 1", language="python") and str(code) == code.code
    assert "fenced block" in lm.requests[0]["messages"][0]["content"]


def test_code_of_a_fixed_language():
    assert em.Code["python"] is em.Code["python"] and issubclass(em.Code["sql"], em.Code)
    assert em.Code["sql"].model_validate("SELECT 1").language == "sql"
    assert em.Code["sql"].model_validate("```\nSELECT 2\n```") == em.Code["sql"](code="SELECT 2", language="sql")

    class Query(em.Signature):
        request: str = em.InputField()
        query: SQL = em.OutputField()

    lm = em.DummyLM(["[[ ## query ## ]]\nSELECT * FROM t\n\n[[ ## completed ## ]]"])
    write = em.Predict(Query)
    write.set_lm(lm)
    query = write(request="all rows").query
    assert (query.code, query.language) == ("SELECT * FROM t", "sql")
    with pytest.raises(ConfigurationError, match="language name"):
        em.Code[3]
