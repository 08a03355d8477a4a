"""docs/autoscaling.md: its YAML parses, and every metric, queue list and pool it names exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fakeredis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import render
from shared.db import Database
from shared.producer import QUEUES, queue_lists

DOC = Path(__file__).resolve().parents[2] / "docs" / "autoscaling.md"


def documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block)]


def exported_metrics(db: Database) -> set[str]:
    text = render(db, fakeredis.FakeRedis()).decode()
    return {family.name for family in text_string_to_metric_families(text)}


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(ladder_[a-z_]+)\b", expression))


def test_every_scaled_object_targets_a_pool_by_what_ladder_exports(db: Database) -> None:
    exported = exported_metrics(db)
    scaled = [d for d in documents() if d.get("kind") == "ScaledObject"]
    assert {d["spec"]["scaleTargetRef"]["name"] for d in scaled} == {
        f"ladder-worker-{pool}" for pool in QUEUES
    }
    triggers: set[tuple[str, str]] = set()
    for document in scaled:
        assert document["apiVersion"] == "keda.sh/v1alpha1"
        pool = document["spec"]["scaleTargetRef"]["name"].removeprefix("ladder-worker-")
        for trigger in document["spec"]["triggers"]:
            triggers.add((pool, trigger["type"]))
            meta = trigger["metadata"]
            if trigger["type"] == "prometheus":
                assert metric_names(meta["query"]) <= exported and metric_names(meta["query"])
                assert f'queue="{pool}"' in meta["query"]
                float(meta["threshold"])
            else:
                assert trigger["type"] == "redis"
                assert meta["listName"] in queue_lists(pool)
                int(meta["listLength"])
    # Each pool can scale either way: from Prometheus, or from Redis alone.
    assert triggers == {(pool, kind) for pool in QUEUES for kind in ("prometheus", "redis")}


def test_alert_rules_use_exported_metrics(db: Database) -> None:
    exported = exported_metrics(db)
    (rules,) = [d for d in documents() if "groups" in d]
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert expressions
    for expression in expressions:
        assert metric_names(expression) and metric_names(expression) <= exported
