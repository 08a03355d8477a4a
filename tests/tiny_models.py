"""A tiny GLM-4 with random weights and a tokenizer trained here: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "How many ways are there to climb ten stairs, one or two steps at a time?",
    "Attention weights say which tokens a transformer looks at.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Quantization stores weights in fewer bits: int8 or int4 instead of float16.",
    "你好，世界。问：今天天气怎么样？答：很好。",
] * 20
SPECIAL = ["<unk>", "<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_glm4(folder: Path) -> None:
    """Glm4ForCausalLM with hidden size 64 and 2 layers; it never emits end-of-text, so a
    generation runs to max_new_tokens (handy for streaming and cancel tests)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Glm4Config, Glm4ForCausalLM, PreTrainedTokenizerFast

    from worker.kinds.generate.prompts import GLM4_TEMPLATE

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = GLM4_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = Glm4Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=None, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Glm4ForCausalLM(config)
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    meta = {"display_name": "tiny GLM-4 (random weights, for tests)", "family": "glm4",
            "random_weights": True}  # fmt: skip
    (folder / "ladder.json").write_text(json.dumps(meta))
