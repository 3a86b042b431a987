#!/usr/bin/env python3
"""Checks .github/workflows/ci.yml, which cannot run here: it must parse as YAML (PyYAML) and
have the three jobs the README promises, each running what the README says it runs.

    python3 ci/check_workflow.py [FILE]

Prints one line per check; exits 1 on the first that fails.
"""
import sys

import yaml

path = sys.argv[1] if len(sys.argv) > 1 else ".github/workflows/ci.yml"


def fail(msg):
    print(f"workflow: FAIL: {path}: {msg}")
    sys.exit(1)


try:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
except (OSError, yaml.YAMLError) as e:
    fail(f"does not parse: {e}")
if not isinstance(doc, dict):
    fail("top level is not a mapping")

# YAML 1.1 reads a bare `on` key as the boolean true.
triggers = doc.get("on", doc.get(True))
if not triggers:
    fail("no `on:` triggers")

jobs = doc.get("jobs")
if not isinstance(jobs, dict):
    fail("no `jobs:` mapping")


def job_text(name):
    """Every `run:` and `uses:` of a job, and the inputs given to actions, as one string."""
    job = jobs.get(name)
    if not isinstance(job, dict):
        fail(f"job `{name}` is missing")
    if "runs-on" not in job:
        fail(f"job `{name}` has no runs-on")
    steps = job.get("steps")
    if not isinstance(steps, list) or not steps:
        fail(f"job `{name}` has no steps")
    parts = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not ("run" in step or "uses" in step):
            fail(f"job `{name}` step {i + 1} has neither run nor uses")
        parts.append(str(step.get("run", "")))
        parts.append(str(step.get("uses", "")))
        parts.extend(str(v) for v in (step.get("with") or {}).values())
    return "\n".join(parts)


expect = {
    "linux": ["bash ci/test.sh", "actions/checkout"],
    "macos": ["cargo test --workspace --release", "actions/checkout"],
    "freebsd": ["vmactions/freebsd-vm", "cargo test --workspace --release"],
}
for name, needles in expect.items():
    text = " ".join(job_text(name).split())
    for needle in needles:
        if needle not in text:
            fail(f"job `{name}` does not run `{needle}`")
    print(f"workflow: job {name}: runs-on {jobs[name]['runs-on']}, has {', '.join(needles)}")

if "macos" not in str(jobs["macos"]["runs-on"]):
    fail("job `macos` does not run on a macOS runner")
print(f"workflow: {path} parses; jobs: {', '.join(jobs)}")
