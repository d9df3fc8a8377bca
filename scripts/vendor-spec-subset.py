#!/usr/bin/env python3
"""Writes the part of a vendor's published spec that a connector uses, as JSON, into the repo.

usage: scripts/vendor-spec-subset.py [--server URL] SPEC OUT PATH [PATH ...]
  --server: the API base the vendor documents outside the spec file, written as the subset's one
            server (Salesforce's spec leaves `servers` empty; its REST base is
            `https://{instance}/services/data/vXX.X`).
  SPEC: the published file (OpenAPI 3 JSON/YAML or Swagger 2 JSON), from the shared vendor-specs.
  OUT:  fixtures/vendor-specs/<vendor>/<file>.json
  PATH: the exact path templates to keep (`/v2/bookings/{bookingUid}/cancel`).
Keeps those paths unchanged plus every local `#/...` definition they reach ($refs followed
transitively); a schema in a sibling file (`./users.json#/components/schemas/X`, as Zoho's split
spec has) is copied in as `#/components/schemas/users.X` with its own references followed, so contract tests (testkit::contract) run on a clean clone without the shared
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


def sibling_refs(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("./") and "#/" in ref:
            out.append(node)
        for value in node.values():
            sibling_refs(value, out)
    elif isinstance(node, list):
        for value in node:
            sibling_refs(value, out)


def inline_sibling_refs(out, source):
    """Copies schemas referenced in sibling files into `out` and points the references at them."""
    import copy
    import os

    folder = os.path.dirname(source)
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    docs = {}
    while True:
        pending = []
        sibling_refs(out, pending)
        if not pending:
            return
        for node in pending:
            file, pointer = node["$ref"][2:].split("#", 1)
            stem = file.rsplit(".", 1)[0]
            if file not in docs:
                docs[file] = load(os.path.join(folder, file))
            target = docs[file]
            for token in pointer.lstrip("/").split("/"):
                target = target[unescape(token)]
            copied = copy.deepcopy(target)
            # The copy's own references are relative to its file.
            fix = []
            local_refs_nodes(copied, fix)
            for ref_node in fix:
                ref_node["$ref"] = "./" + file + ref_node["$ref"]
            if not pointer.startswith("/components/schemas/"):
                # Not a schema (a security scheme, …): copied in place.
                node.clear()
                node.update(copied)
                continue
            name = stem + "." + unescape(pointer.rsplit("/", 1)[-1])
            schemas.setdefault(name, copied)
            node["$ref"] = "#/components/schemas/" + name


def local_refs_nodes(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out.append(node)
        for value in node.values():
            local_refs_nodes(value, out)
    elif isinstance(node, list):
        for value in node:
            local_refs_nodes(value, out)


def main():
    args = sys.argv[1:]
    server = None
    if args and args[0] == "--server":
        server, args = args[1], args[2:]
    source, target, wanted = args[0], args[1], args[2:]
    doc = load(source)
    missing = [p for p in wanted if p not in doc["paths"]]
    if missing:
        sys.exit(f"not in {source}: {missing}")
    out = {k: v for k, v in doc.items() if k not in ("paths", "components", "definitions", "parameters")}
    out["paths"] = {p: doc["paths"][p] for p in wanted}
    if server:
        out["servers"] = [{"url": server}]
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
    inline_sibling_refs(out, source)
    with open(target, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
