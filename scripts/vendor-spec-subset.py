#!/usr/bin/env python3
"""Writes the part of a vendor's published spec that a connector uses, as JSON, into the repo.

usage: scripts/vendor-spec-subset.py SPEC OUT PATH [PATH ...]
  SPEC: the published file (OpenAPI 3 JSON/YAML or Swagger 2 JSON), from the shared vendor-specs.
  OUT:  fixtures/vendor-specs/<vendor>/<file>.json
  PATH: the exact path templates to keep (`/v2/bookings/{bookingUid}/cancel`).
Keeps those paths unchanged plus every local `#/...` definition they reach ($refs followed
transitively), so contract tests (testkit::contract) run on a clean clone without the shared
folder. Needs PyYAML for YAML input.
"""
import json
import sys


def load(path):
    text = open(path).read()
    try:
        return json.loads(text)
    except ValueError:
        import yaml

        # A bare `=` scalar (Zendesk's spec) resolves to YAML 1.1's `value` tag, which
        # SafeLoader cannot build: read it as the string it is.
        yaml.SafeLoader.add_constructor(
            "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
        )
        return yaml.safe_load(text)


def local_refs(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out.add(ref)
        for value in node.values():
            local_refs(value, out)
    elif isinstance(node, list):
        for value in node:
            local_refs(value, out)


def unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def main():
    source, target, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
    doc = load(source)
    missing = [p for p in wanted if p not in doc["paths"]]
    if missing:
        sys.exit(f"not in {source}: {missing}")
    out = {k: v for k, v in doc.items() if k not in ("paths", "components", "definitions", "parameters")}
    out["paths"] = {p: doc["paths"][p] for p in wanted}
    todo, seen = set(), set()
    local_refs(out["paths"], todo)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        tokens = [unescape(t) for t in ref[2:].split("/")]
        node, holder_doc, holder_out = doc, None, out
        # Copy the referenced node (and the containers on its way) into `out`.
        for i, token in enumerate(tokens):
            node = node[token]
            if i < len(tokens) - 1:
                holder_out = holder_out.setdefault(token, {})
            else:
                holder_out[token] = node
        local_refs(node, todo)
    schemes = doc.get("components", {}).get("securitySchemes")
    if schemes:
        out.setdefault("components", {})["securitySchemes"] = schemes
    if "securityDefinitions" in doc:
        out["securityDefinitions"] = doc["securityDefinitions"]
    with open(target, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
