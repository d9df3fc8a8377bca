#!/usr/bin/env python3
"""Writes the methods a connector uses from a Google API discovery document as a Swagger 2
document, so the contract kit (testkit/src/contract.rs) checks requests against it.

usage: scripts/discovery-to-swagger2.py DISCOVERY OUT METHOD_ID [METHOD_ID ...]
  DISCOVERY: the published discovery document (`sheets__v4.json`) from the shared vendor-specs.
  OUT:       fixtures/vendor-specs/<vendor>/<file>.swagger2.json
  METHOD_ID: the discovery method ids to keep (`sheets.spreadsheets.values.append`).
Paths are each method's `flatPath` under the service path, written in full (basePath `/`); parameters keep their location,
type and `required`, and the document-wide query parameters (`fields`, `uploadType`, …) are added
to each; the request body references the method's request schema; a method that takes media
(`supportsMediaUpload`) also gets its upload path (`mediaUpload.protocols.simple.path`, from the
root) whose body is `multipart/related` (the metadata part checked against the request schema)
or, for a resumable session, the metadata as JSON; every schema the
kept methods reach (`$ref`s followed transitively) is written under `definitions`. Security is
OAuth 2.0 bearer, as the discovery document's `auth` declares.
"""
import json
import sys


def methods(resources):
    for resource in resources.values():
        for method in resource.get("methods", {}).values():
            yield method
        yield from methods(resource.get("resources", {}))


def refs(node, out):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            out.add(node["$ref"])
        for value in node.values():
            refs(value, out)
    elif isinstance(node, list):
        for value in node:
            refs(value, out)


def swagger_refs(node):
    """Discovery `$ref: "X"` → `#/definitions/X`; `type: "any"` (not JSON Schema) → no type."""
    if isinstance(node, dict):
        return {
            k: ("#/definitions/" + v if k == "$ref" and isinstance(v, str) else swagger_refs(v))
            for k, v in node.items()
            if not (k == "type" and v == "any")
        }
    if isinstance(node, list):
        return [swagger_refs(v) for v in node]
    return node


def main():
    source, out, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
    doc = json.load(open(source))
    base = "/" + doc.get("servicePath", "").strip("/")
    paths, used = {}, set()
    shared = [{"name": n, "in": "query", "type": p.get("type", "string"),
               **({"enum": p["enum"]} if "enum" in p else {})}
              for n, p in sorted(doc.get("parameters", {}).items()) if p.get("location") == "query"]
    for method in methods(doc.get("resources", {})):
        if method["id"] not in wanted:
            continue
        wanted.discard(method["id"])
        params = []
        for name, p in method.get("parameters", {}).items():
            param = {"name": name, "in": p["location"], "type": p.get("type", "string")}
            if p.get("required") or p["location"] == "path":
                param["required"] = True
            if "enum" in p:
                param["enum"] = p["enum"]
            if p.get("repeated"):
                param = {**param, "type": "array", "items": {"type": p.get("type", "string")},
                         "collectionFormat": "multi"}
            params.append(param)
        params += [p for p in shared if p["name"] not in {q["name"] for q in params}]
        if "request" in method:
            params.append({"name": "body", "in": "body", "required": True,
                           "schema": {"$ref": method["request"]["$ref"]}})
        operation = {"operationId": method["id"], "parameters": params,
                     "security": [{"oauth2": []}],
                     "responses": {"200": {"description": "OK"}}}
        if "response" in method:
            operation["responses"]["200"]["schema"] = {"$ref": method["response"]["$ref"]}
        refs(operation, used)
        # Full paths under basePath `/`: upload paths are not under the service path.
        path = base.rstrip("/") + "/" + method.get("flatPath", method["path"]).lstrip("/")
        paths.setdefault(path, {})[method["httpMethod"].lower()] = swagger_refs(operation)
        simple = method.get("mediaUpload", {}).get("protocols", {}).get("simple", {}).get("path")
        if method.get("supportsMediaUpload") and simple:
            upload = dict(operation, operationId=method["id"] + ".upload",
                          consumes=["multipart/related", "application/json"],
                          parameters=[dict(p, required=True) if p["name"] == "uploadType" else p
                                      for p in params])
            paths.setdefault(simple, {})[method["httpMethod"].lower()] = swagger_refs(upload)
    if wanted:
        sys.exit("not in the discovery document: " + ", ".join(sorted(wanted)))
    schemas, todo = {}, set(used)
    while todo:
        name = todo.pop()
        if name in schemas:
            continue
        schema = dict(doc["schemas"][name])
        schema.pop("id", None)
        schemas[name] = schema
        found = set()
        refs(schema, found)
        todo |= found - set(schemas)
    swagger = {
        "swagger": "2.0",
        "info": {"title": doc.get("title", doc["name"]), "version": doc["version"]},
        "host": doc["rootUrl"].split("//", 1)[1].rstrip("/"),
        "basePath": "/",
        "schemes": ["https"],
        "securityDefinitions": {"oauth2": {"type": "oauth2", "flow": "accessCode",
                                           "authorizationUrl": "https://accounts.google.com/o/oauth2/auth",
                                           "tokenUrl": "https://oauth2.googleapis.com/token",
                                           "scopes": {s: "" for s in doc.get("auth", {}).get("oauth2", {}).get("scopes", {})}}},
        "paths": paths,
        "definitions": {k: swagger_refs(v) for k, v in sorted(schemas.items())},
    }
    with open(out, "w") as f:
        json.dump(swagger, f, indent=1, sort_keys=True)
        f.write("\n")


main()
