"""The llama.cpp engine: a GGUF model on the CPU, several jobs decoding in one llama.cpp context.

llama.cpp runs a GGUF file's weights as stored (Q4_1 for SmolLM2) with kernels written for
CPUs. Its Python binding's `Llama` class decodes one sequence at a time and is not
thread-safe, so this engine uses the binding's lower layer: one context with a KV cache slot
per job (`n_seq_max`), and each step one `llama_decode` of every job's last token. Each job
samples from its own logits with its own `Sampler`, so it keeps what it has on the
transformers engine: its seed, stop strings, token events, cancel and time limit. Only the
engine thread touches the context; job threads only tokenize, which reads the vocabulary.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
import weakref
from typing import Any

import numpy as np
import torch

from shared.model_registry import ModelEntry
from shared.planner import plan_gguf
from worker.device import available_bytes, peak_rss_bytes, reset_peak_rss, rss_bytes
from worker.kinds.generate.batch import Engine, Sequence
from worker.model_cache import ModelError, weights_sha256

log = logging.getLogger(__name__)

CONTEXT = 2048
"""Tokens of KV cache for each job, prompt and completion together (the planner's context)."""
CHUNK = 512
"""Prompt tokens read per llama_decode (llama.cpp's default batch)."""


def load(entry: ModelEntry, batch: int) -> Any:
    """Plan and load a GGUF model for up to `batch` jobs at once (a Generator, see loading)."""
    import llama_cpp
    from llama_cpp._logger import set_verbose

    from worker.kinds.generate.loading import Generator

    # Errors only: this build logs its model summary, a hundred lines per load, as warnings.
    set_verbose(False)
    info = entry.gguf_info()
    free = available_bytes()
    if free is None:
        raise ModelError("cannot read the available memory")
    context = min(CONTEXT, info.number("context_length", CONTEXT) or CONTEXT)
    chosen = plan_gguf(info, free, batch, context, CHUNK)
    started, rss_before = time.perf_counter(), rss_bytes()
    reset_peak_rss()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(entry.gguf).encode(), params)
    if not model:
        # The header read well (the registry checked it), so llama.cpp lacks something here.
        raise ModelError(
            f"llama.cpp could not load {entry.name} ({info.file_type}, architecture "
            f"{info.metadata.get('general.architecture')}); its log on stderr says why"
        )
    vocab = Vocabulary(model, info.metadata)
    engine = LlamaEngine(model, vocab.size, batch, context)
    return Generator(
        entry=entry,
        model=model,
        tokenizer=vocab,
        plan=chosen,
        weights_sha256=weights_sha256(entry),
        nbytes=info.size,
        rss_before=rss_before,
        load_seconds=time.perf_counter() - started,
        engine=engine,
        eos_ids=vocab.eos,
        device=torch.device("cpu"),
        # The weights are mapped from the file, and count only once they are first read.
        load_peak_bytes=max(0, peak_rss_bytes() - rss_before),
    )


class Vocabulary:
    """A GGUF model's tokenizer, in the shape of a transformers tokenizer where Ladder uses one
    (calling it, `decode`, `apply_chat_template`)."""

    def __init__(self, model: Any, metadata: dict[str, Any]) -> None:
        import llama_cpp

        self._cpp = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.size = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.eos = {t for t in range(self.size) if llama_cpp.llama_vocab_is_eog(self._vocab, t)}
        self._formatter: Any = None
        template = metadata.get("tokenizer.chat_template")
        if template:  # compiled once: jobs only render it
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = self._text(llama_cpp.llama_vocab_eos), self._text(llama_cpp.llama_vocab_bos)
            self._formatter = Jinja2ChatFormatter(template, eos, bos)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        data = text.encode()
        add_bos = add_special_tokens and self.add_bos
        size = len(data) + 2  # a token covers at least a byte; a BOS may come first
        ids = (self._cpp.llama_token * size)()
        n = self._cpp.llama_tokenize(self._vocab, data, len(data), ids, size, add_bos, True)
        if n < 0:
            raise ModelError("llama.cpp could not tokenize the prompt")
        return {"input_ids": list(ids[:n])}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        buffer = ctypes.create_string_buffer(256)
        out = bytearray()
        for token in ids:
            n = self._cpp.llama_token_to_piece(self._vocab, token, buffer, 256, 0,
                                               not skip_special_tokens)  # fmt: skip
            out += buffer.raw[: max(n, 0)]
        # A character cut between tokens decodes as U+FFFD, which TextStream waits out.
        return out.decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        """The chat in the GGUF's own template, ending where the assistant's reply begins."""
        if self._formatter is None:
            raise ModelError("the GGUF file has no chat template; send a prompt instead")
        return str(self._formatter(messages=messages).prompt)

    def _text(self, which: Any) -> str:
        token = which(self._vocab)
        return "" if token < 0 else self._cpp.llama_vocab_get_text(self._vocab, token).decode()


class LlamaEngine(Engine):
    """Decodes a GGUF model's jobs together in one llama.cpp context, a KV cache slot each."""

    def __init__(self, model: Any, vocab_size: int, capacity: int, context: int) -> None:
        import llama_cpp

        super().__init__(capacity)
        self._cpp = llama_cpp
        self.context = context
        self._vocab_size = vocab_size
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context * capacity
        params.n_seq_max = capacity
        params.kv_unified = False  # a KV buffer a slot: 10-20% faster for 8 jobs than one shared
        params.n_batch = params.n_ubatch = max(CHUNK, capacity)
        params.n_threads = params.n_threads_batch = len(os.sched_getaffinity(0))
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(model)
            raise ModelError(f"llama.cpp could not make a context of {params.n_ctx} tokens")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        # Freed once nothing refers to the engine (its thread has ended, its Generator is
        # gone), so no job can be using them; or at exit, while the library is still there.
        weakref.finalize(self, _free_native, llama_cpp, self._batch, self._ctx, model)
        self._vacant = list(range(capacity))
        self._slots: dict[Sequence, int] = {}

    def _loop(self) -> None:
        # Sampling here runs torch on a vocabulary of logits; its OpenMP threads would then spin
        # on the cores llama.cpp's threads need for the next decode (11 ms a token instead of
        # 8.5 on SmolLM2). OpenMP's thread count is this thread's own setting.
        torch.set_num_threads(1)
        super()._loop()

    def _admit(self, joining: list[Sequence]) -> None:
        """Read every joining prompt in the same llama_decode calls (a slot each), up to CHUNK
        tokens a call: prompts cost far less per token read together than one by one."""
        entries: list[tuple[int, int, int, Sequence | None]] = []
        admitted: list[Sequence] = []
        for sequence in joining:
            prompt = sequence.prompt_ids
            if not 0 < len(prompt) < self.context:
                sequence.fail(ModelError(f"the prompt is {len(prompt)} tokens; this model's "
                                         f"context on llama.cpp is {self.context}"))  # fmt: skip
                continue
            sequence.limit = min(sequence.limit, self.context - len(prompt))
            self._slots[sequence] = slot = self._vacant.pop()
            admitted.append(sequence)
            entries += [(t, i, slot, None) for i, t in enumerate(prompt[:-1])]
            entries.append((prompt[-1], len(prompt) - 1, slot, sequence))
        batch_size = len(self._rows) + len(admitted)
        try:
            for start in range(0, len(entries), CHUNK):
                chunk = entries[start : start + CHUNK]
                self._decode([(t, position, slot, last is not None)
                              for t, position, slot, last in chunk])  # fmt: skip
                for i, (_, _, _, last) in enumerate(chunk):
                    if last is not None:  # a prompt's last token: its job's first choice
                        self._enter(last, self._logits(i), batch_size)
        except Exception as exc:
            log.exception("generation failed while reading the prompts")
            for sequence in admitted:
                if sequence not in self._rows and not sequence.done.is_set():
                    self._release(self._slots.pop(sequence))
                    sequence.fail(exc)

    def _enter(self, sequence: Sequence, logits: torch.Tensor, batch_size: int) -> None:
        """Give the job its next token: it stays in `_rows` unless that ended it."""
        sequence.batch_size_max = batch_size
        if sequence.accept(logits):
            self._release(self._slots.pop(sequence))
            sequence.done.set()
        else:
            self._rows.append(sequence)

    def _step(self) -> None:
        rows = self._rows
        self._decode([(s.completion[-1], len(s.prompt_ids) + len(s.completion) - 1,
                       self._slots[s], True) for s in rows])  # fmt: skip
        self._rows = []
        for i, sequence in enumerate(rows):
            self._enter(sequence, self._logits(i), max(sequence.batch_size_max, len(rows)))

    def _reset(self) -> None:
        self._cpp.llama_memory_clear(self._memory, True)
        self._vacant, self._slots, self._rows = list(range(self.capacity)), {}, []

    def _release(self, slot: int) -> None:
        self._cpp.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._vacant.append(slot)

    def _decode(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, slot, wants logits) entries."""
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (token, position, slot, wanted) in enumerate(tokens):
            batch.token[i], batch.pos[i] = token, position
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, slot
            batch.logits[i] = wanted
        code = self._cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise ModelError(f"llama_decode returned {code}")

    def _logits(self, index: int) -> torch.Tensor:
        """The logits of the `index`th entry of the last decode, copied (the next overwrites)."""
        pointer = self._cpp.llama_get_logits_ith(self._ctx, index)
        row = np.ctypeslib.as_array(pointer, shape=(self._vocab_size,))
        return torch.from_numpy(row.copy())


def _free_native(cpp: Any, batch: Any, ctx: Any, model: Any) -> None:
    cpp.llama_batch_free(batch)
    cpp.llama_free(ctx)
    cpp.llama_model_free(model)
