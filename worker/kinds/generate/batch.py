"""Continuous batching: one loaded model decodes many jobs together, each joining and leaving
between decoding steps.

A job's prompt is prefilled alone; its KV cache is then left-padded to the batch's width and
stacked onto the batch's, and every step feeds each job's last token at once. A job leaves the
moment it ends (a stop, its length, a cancel, its deadline); the columns that only padding
still uses are cut away. Each job keeps its own sampler, seed and stop strings.

transformers' own `ContinuousBatchingManager` ran at 33 tokens/s against 50 for a static batch
of 8 on this CPU (RECIPES.md), and lacks what a job here needs: its seed is the manager's, not
a request's, and a request may set only temperature, top-k and top-p (no repetition penalty,
no stop strings).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from inspect import signature
from typing import Any

import torch
import torch.nn.functional as F
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import RedisError

from shared.kinds.generate import GenerateParams
from worker.context import RunContext
from worker.kinds.generate.sampling import Sampler
from worker.progress import EVENT_SECONDS

log = logging.getLogger(__name__)

IDLE_SECONDS = 5.0
"""An engine's thread ends after this long with nothing to do (a new job starts another)."""
REPORT_SECONDS: float | None = EVENT_SECONDS
"""How often a job's thread reports its tokens: as often as a `progress` event may go out."""


class TextStream:
    """Publishes a job's new text as `token` events, from all its tokens decoded so far (so a
    character split across tokens arrives whole), holding back what may begin a stop string."""

    def __init__(self, decode: Callable[[list[int]], str], context: RunContext, stops: list[str]):
        self.decode, self.context, self.stops = decode, context, stops
        self.sent = ""
        self.text = ""
        self.count = 0
        self.stopped = False

    def update(self, ids: list[int]) -> None:
        self.count = len(ids)
        text = self.decode(ids)
        found = [text.index(s) for s in self.stops if s in text]
        if found:  # the text ends before a stop string, as OpenAI's does
            self.text, self.stopped = text[: min(found)], True
            self._send(self.text)
            return
        self.text = text
        if not text.endswith("\ufffd"):  # else half a character: wait for the rest
            self._send(text[: len(text) - self._held(text)])

    def close(self) -> None:
        self._send(self.text)

    def _held(self, text: str) -> int:
        """How many characters at the end could be the start of a stop string."""
        return max(
            (k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0
        )

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.context.publish("token", {"text": text[len(self.sent) :], "n": self.count})
            self.sent = text


class Sequence:
    """One job's generation: its prompt, what it has generated, and how it ended."""

    def __init__(
        self,
        params: GenerateParams,
        prompt_ids: list[int],
        context: RunContext,
        sampler: Sampler,
        text: TextStream,
        eos: set[int],
    ) -> None:
        self.params, self.prompt_ids, self.context = params, prompt_ids, context
        self.sampler, self.text, self.eos = sampler, text, eos
        self.completion: list[int] = []
        self.limit = params.max_new_tokens
        """Tokens it may generate: an engine whose context ends sooner lowers it."""
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.batch_size_max = 0
        self.done = threading.Event()

    def accept(self, logits: torch.Tensor) -> bool:
        """Take the next token from this job's row of logits; True once the job has ended."""
        token = self.sampler.pick(logits, lambda: self.prompt_ids + self.completion)
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.completion.append(token)
        self._tell(lambda: self.text.update(self.completion))
        if self.text.stopped or token in self.eos:
            return self._end("stop")
        if len(self.completion) >= self.limit:
            return self._end("length")
        if self._tell(self.context.cancelled):
            return self._end("cancelled")
        if self.context.deadline is not None and time.monotonic() > self.context.deadline:
            self.error = SoftTimeLimitExceeded()
            return self._end("timeout")
        return False

    def report_progress(self) -> None:
        """Tell the job's followers and row how many of its tokens it has. Called from the
        job's own thread, which reads what the engine's appends (a list's length is atomic)."""
        made = len(self.completion)
        if made:
            self.context.progress(made / self.limit, "generating", tokens=made,
                                  max_tokens=self.limit)  # fmt: skip

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._end("error")
        self.done.set()

    def _end(self, reason: str) -> bool:
        self.finish_reason, self.ended_at = reason, time.perf_counter()
        if self.error is None:
            self._tell(self.text.close)
        return True

    def _tell(self, talk: Callable[[], Any]) -> Any:
        """Talk to Redis (tokens out, a cancel in) without letting a failure stop the batch:
        text not sent goes with the next token, and followers read the end from the row."""
        try:
            return talk()
        except RedisError:
            log.warning("job %s: Redis did not answer; generating on", self.context.job_id)
            return None


class Engine:
    """Decodes the jobs given to `run` together, up to `capacity` at a time.

    Callers (a threads pool's threads, one job each) block in `run` while one engine thread
    steps the batch; that thread starts with the first job and ends when idle. Subclasses
    say how a job joins the batch (`_join`), how one step runs (`_step`), and how to start
    afresh after a step broke (`_reset`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rows: list[Sequence] = []

    def run(self, sequence: Sequence) -> None:
        """Generate until the sequence ends; raises what ended it badly (its time limit, say).
        The caller's thread, idle meanwhile, reports the job's progress: the engine's thread,
        which every job of the batch waits on, spends nothing on it."""
        with self._lock:
            self._inbox.put(sequence)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ladder-generate",
                                                 daemon=True)  # fmt: skip
                self._thread.start()
        while not sequence.done.wait(REPORT_SECONDS):
            sequence.report_progress()
        if sequence.error is not None:
            raise sequence.error

    def _loop(self) -> None:
        while True:
            joining = self._take()
            if joining is None:
                return
            try:
                self._admit(joining)
                if self._rows:
                    self._step()
            except Exception as exc:
                # No job may wait forever on a batch that broke: all of them fail, the
                # engine starts afresh with the next.
                log.exception("a batched decoding step failed; its jobs fail")
                for sequence in {*joining, *self._rows}:
                    if not sequence.done.is_set():
                        sequence.fail(exc)
                self._reset()

    def _take(self) -> list[Sequence] | None:
        """The jobs that join before the next step; waits for one when the batch is empty;
        None when it waited long enough to stop."""
        joining = []
        if not self._rows:
            try:
                joining.append(self._inbox.get(timeout=IDLE_SECONDS))
            except queue.Empty:
                with self._lock:
                    if self._inbox.empty():
                        self._thread = None
                        return None
        while len(self._rows) + len(joining) < self.capacity:
            try:
                joining.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return joining

    def _admit(self, joining: list[Sequence]) -> None:
        """Read the joining jobs' prompts and take their first tokens; each joins `_rows`
        unless it ended already."""
        for sequence in joining:
            self._join(sequence)

    def _join(self, sequence: Sequence) -> None:
        raise NotImplementedError

    def _step(self) -> None:
        """Take one token for each row; the rows that ended leave."""
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError


class TransformersEngine(Engine):
    """Batches a transformers model's jobs over its KV cache (see the module's docstring)."""

    def __init__(self, model: Any, capacity: int) -> None:
        self.model = model
        self._options = _options(model)
        # A model with a cache of its own (remote code, say) still runs, one job at a time.
        super().__init__(capacity if self._stackable() else 1)
        self._cache: Any = None
        self._mask = torch.empty(0)

    def _reset(self) -> None:
        self._rows, self._cache = [], None

    @torch.inference_mode()
    def _join(self, sequence: Sequence) -> None:
        try:
            ids = torch.tensor([sequence.prompt_ids], device=self.model.device)
            out = self.model(input_ids=ids, use_cache=True, **self._options)
            sequence.batch_size_max = len(self._rows) + 1
            if sequence.accept(out.logits[0, -1]):
                sequence.done.set()
                return
        except Exception as exc:
            log.exception("generation failed while reading the prompt")
            sequence.fail(exc)
            return
        self._stack(sequence, out.cache)

    def _stack(self, sequence: Sequence, cache: Any) -> None:
        width = len(sequence.prompt_ids)
        mask = torch.ones(1, width, dtype=torch.long, device=self.model.device)
        if not self._rows:
            self._cache, self._mask = cache, mask
        else:
            wide = max(width, self._mask.shape[1])
            ours, theirs = wide - self._mask.shape[1], wide - width
            for mine, new in zip(self._cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([_pad(mine.keys, ours), _pad(new.keys, theirs)])
                mine.values = torch.cat([_pad(mine.values, ours), _pad(new.values, theirs)])
            self._mask = torch.cat([F.pad(self._mask, (ours, 0)), F.pad(mask, (theirs, 0))])
        self._rows.append(sequence)

    def _stackable(self) -> bool:
        """Whether the model's cache is a plain dynamic one, whose layers stack along the batch:
        one token's forward tells."""
        from transformers.cache_utils import DynamicLayer

        with torch.inference_mode():
            ids = torch.zeros(1, 1, dtype=torch.long, device=self.model.device)
            cache = self.model(input_ids=ids, use_cache=True).cache
        layers: list[Any] = getattr(cache, "layers", None) or []
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    @torch.inference_mode()
    def _step(self) -> None:
        rows = self._rows
        last = [[sequence.completion[-1]] for sequence in rows]
        mask = F.pad(self._mask, (0, 1), value=1)
        out = self.model(
            input_ids=torch.tensor(last, device=self._mask.device),
            attention_mask=mask,
            position_ids=mask.sum(-1, keepdim=True) - 1,  # padding takes no position
            cache=self._cache,
            use_cache=True,
            **self._options,
        )
        self._mask = mask
        staying = []
        for i, sequence in enumerate(rows):
            sequence.batch_size_max = max(sequence.batch_size_max, len(rows))
            if sequence.accept(out.logits[i, -1]):
                sequence.done.set()
            else:
                staying.append(i)
        if len(staying) < len(rows):
            self._keep(staying)

    def _keep(self, staying: list[int]) -> None:
        """Drop the rows that ended, then the columns only padding uses."""
        self._rows = [self._rows[i] for i in staying]
        if not self._rows:
            self._cache = None
            return
        index = torch.tensor(staying, device=self._mask.device)
        self._mask = self._mask[index]
        used = self._mask.any(0).nonzero()
        start = int(used[0]) if used.numel() else 0
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]


def _pad(tensor: torch.Tensor, left: int) -> torch.Tensor:
    """Zeros before the sequence dimension's start (keys and values are batch, heads, seq, dim)."""
    return F.pad(tensor, (0, 0, left, 0)) if left else tensor


def _options(model: Any) -> dict[str, Any]:
    """Ask for the last position's logits only, where the model can (most of transformers')."""
    return {"logits_to_keep": 1} if "logits_to_keep" in signature(model.forward).parameters else {}
