"""Prompt formats of the ChatGLM family, for folders that carry no chat template of their own.

Each turns chat messages ([{"role", "content"}], the last one the user's) into the text the
model was trained on. GLM-4 folders normally bring their template (then the tokenizer's own
`apply_chat_template` is used); `glm4` here reproduces it for those that do not.
"""

from __future__ import annotations

from collections.abc import Callable

Message = dict[str, str]
STYLES = ("chatglm", "chatglm2", "chatglm3", "glm4")


def _rounds(messages: list[Message]) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs of the history, and the last question; system text is dropped
    by ChatGLM-6B and ChatGLM2, which had no system role."""
    turns = [m for m in messages if m["role"] != "system"]
    history = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
    return history, turns[-1]["content"]


def chatglm(messages: list[Message]) -> str:
    """ChatGLM-6B: the bare query alone, or rounds `[Round i]\\n问：…\\n答：…` from 0."""
    history, query = _rounds(messages)
    if not history:
        return query
    text = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
    return text + f"[Round {len(history)}]\n问：{query}\n答："


def chatglm2(messages: list[Message]) -> str:
    """ChatGLM2-6B: rounds from 1, with blank lines, always framed."""
    history, query = _rounds(messages)
    text = "".join(f"[Round {i}]\n\n问：{q}\n\n答：{a}\n\n" for i, (q, a) in enumerate(history, 1))
    return text + f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："


def chatglm3(messages: list[Message]) -> str:
    """ChatGLM3-6B: `[gMASK]sop`, then `<|role|>\\n content` per message, then `<|assistant|>`."""
    body = "".join(f"<|{m['role']}|>\n{m['content']}" for m in messages)
    return f"[gMASK]sop{body}<|assistant|>"


def glm4(messages: list[Message]) -> str:
    """GLM-4: `[gMASK]<sop>`, `<|role|>\\ncontent` per message, then `<|assistant|>\\n`."""
    body = "".join(f"<|{m['role']}|>\n{m['content']}" for m in messages)
    return f"[gMASK]<sop>{body}<|assistant|>\n"


FORMATS: dict[str, Callable[[list[Message]], str]] = {
    "chatglm": chatglm,
    "chatglm2": chatglm2,
    "chatglm3": chatglm3,
    "glm4": glm4,
}

# GLM-4's chat template as a Jinja string, for tokenizers built without one (tests, demos).
GLM4_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
