"""A worker under a container's memory limit: the planner reads the cgroup, and int8 loads
within a cap that fp32 does not fit, without ever holding the fp32 weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cgroups import join, memory_cgroup
from tests.support import need

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20
CAP = 450 * MB
"""SmolLM2 needs about 665 MB in fp32 and 222 MB in int8, by the planner's estimates."""

CHILD = """
import json, sys
from pathlib import Path
from shared.model_registry import resolve
from shared.planner import PlanRefused
from worker.kinds.generate import loading

entry = resolve("smollm2", Path("var/models"))
print("ready", flush=True)
sys.stdin.readline()  # moved into the cgroup by now
answer = {"free": loading.free_bytes("cpu")}
try:
    loading.load(entry, "cpu", "fp32", trust=False)
except PlanRefused as exc:
    answer["fp32"] = str(exc)
generator = loading.load(entry, "cpu", "int8", trust=False)
encoded = generator.tokenizer("The capital of France is", return_tensors="pt")
out = generator.model.generate(**encoded, max_new_tokens=8, do_sample=False)
answer["text"] = generator.tokenizer.decode(out[0, encoded["input_ids"].shape[1]:])
answer["plan"] = generator.plan.as_dict()
answer["load_peak"] = generator.load_peak_bytes
print(json.dumps(answer), flush=True)
"""


def test_int8_loads_under_a_memory_cap_that_fp32_does_not_fit() -> None:
    with memory_cgroup(CAP) as cgroup:
        if cgroup is None:
            need("a memory cgroup", "this machine lets no test make one (needs root, cgroupfs)")
        assert cgroup is not None
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # torch and transformers imported
        join(cgroup, child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0, f"the worker died (killed by the cap?): {child.returncode}"
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["free"] <= CAP  # the cgroup's headroom, not the machine's 20-odd GB
    assert "needs about" in answer["fp32"] and "at fp32" in answer["fp32"]
    assert answer["plan"]["quantization"] == "int8"
    assert answer["load_peak"] < CAP
    assert answer["text"].strip()
