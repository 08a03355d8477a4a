"""The ChatGLM family's prompt formats, written out by hand from each model's own code."""

from __future__ import annotations

from jinja2 import Template

from worker.kinds.generate.prompts import GLM4_TEMPLATE, chatglm, chatglm2, chatglm3, glm4

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "你好！"},
    {"role": "user", "content": "几点了？"},
]


def test_chatglm_6b() -> None:
    assert chatglm([{"role": "user", "content": "你好"}]) == "你好"  # no history: the bare query
    assert chatglm(CHAT) == "[Round 0]\n问：你好\n答：你好！\n[Round 1]\n问：几点了？\n答："


def test_chatglm2() -> None:
    assert chatglm2([{"role": "user", "content": "你好"}]) == "[Round 1]\n\n问：你好\n\n答："
    assert (
        chatglm2(CHAT) == "[Round 1]\n\n问：你好\n\n答：你好！\n\n[Round 2]\n\n问：几点了？\n\n答："
    )


def test_chatglm3_role_tokens() -> None:
    assert chatglm3(CHAT) == (
        "[gMASK]sop<|system|>\nBe brief.<|user|>\n你好<|assistant|>\n你好！"
        "<|user|>\n几点了？<|assistant|>"
    )


def test_glm4_and_its_template_agree() -> None:
    expected = (
        "[gMASK]<sop><|system|>\nBe brief.<|user|>\n你好<|assistant|>\n你好！<|user|>\n几点了？"
        "<|assistant|>\n"
    )
    assert glm4(CHAT) == expected
    assert Template(GLM4_TEMPLATE).render(messages=CHAT, add_generation_prompt=True) == expected
