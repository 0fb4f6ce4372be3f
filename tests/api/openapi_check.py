"""Checking real responses against docs/openapi.json: a small JSON Schema (2020-12) validator
for the keywords the document uses, and checks of a live response (status, body, documented
headers) against the document's response object for an operation. Shared by test_openapi.py and
the scenario suites that produce responses only they can (real call records, test_calls_sip.py).
"""

import json
import re

from conftest import REPO

DOC_PATH = REPO / "docs" / "openapi.json"
DOC = json.loads(DOC_PATH.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# A JSON Schema (2020-12) subset: the keywords docs/openapi.json uses. An unknown keyword is an
# error, so that the document cannot grow a constraint this validator silently ignores.

ANNOTATIONS = {"description", "example", "examples", "title", "format", "default", "$comment",
               "deprecated", "readOnly", "writeOnly"}
TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def pointer(doc, ref):
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        node = pointer(doc, node["$ref"])
    return node


def same(a, b):
    """JSON equality (true is not 1)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def schema_errors(schema, value, doc=DOC, where="$"):
    """The list of reasons `value` does not match `schema` (empty: it matches)."""
    errs = []
    if schema is True or schema == {}:
        return errs
    if schema is False:
        return [f"{where}: no value is allowed here"]
    for kw in schema:
        if kw in ANNOTATIONS:
            continue
        if kw == "$ref":
            errs += schema_errors(pointer(doc, schema["$ref"]), value, doc, where)
        elif kw == "type":
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(TYPES[t](value) for t in types):
                errs.append(f"{where}: {value!r} is not of type {types}")
        elif kw == "const":
            if not same(value, schema["const"]):
                errs.append(f"{where}: {value!r} is not {schema['const']!r}")
        elif kw == "enum":
            if not any(same(value, e) for e in schema["enum"]):
                errs.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
        elif kw == "pattern":
            if isinstance(value, str) and not re.search(schema["pattern"], value):
                errs.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
        elif kw in ("minLength", "maxLength"):
            if isinstance(value, str):
                n = len(value)  # code points, as JSON Schema counts
                if (n < schema[kw]) if kw == "minLength" else (n > schema[kw]):
                    errs.append(f"{where}: length {n} breaks {kw} {schema[kw]}")
        elif kw in ("minimum", "maximum"):
            if TYPES["number"](value) and ((value < schema[kw]) if kw == "minimum"
                                           else (value > schema[kw])):
                errs.append(f"{where}: {value!r} breaks {kw} {schema[kw]}")
        elif kw == "required":
            if isinstance(value, dict):
                errs += [f"{where}: {k!r} is missing" for k in schema["required"] if k not in value]
        elif kw == "properties":
            if isinstance(value, dict):
                for k, sub in schema["properties"].items():
                    if k in value:
                        errs += schema_errors(sub, value[k], doc, f"{where}.{k}")
        elif kw == "additionalProperties":
            if isinstance(value, dict):
                extra = [k for k in value if k not in schema.get("properties", {})]
                for k in extra:
                    errs += schema_errors(schema["additionalProperties"], value[k], doc,
                                          f"{where}.{k}")
        elif kw in ("minProperties", "maxProperties"):
            if isinstance(value, dict):
                n = len(value)
                if (n < schema[kw]) if kw == "minProperties" else (n > schema[kw]):
                    errs.append(f"{where}: {n} properties, {kw} {schema[kw]}")
        elif kw == "propertyNames":
            if isinstance(value, dict):
                for k in value:
                    errs += schema_errors(schema["propertyNames"], k, doc, f"{where}[{k!r}]")
        elif kw == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    errs += schema_errors(schema["items"], item, doc, f"{where}[{i}]")
        elif kw in ("oneOf", "anyOf", "allOf"):
            results = [schema_errors(sub, value, doc, where) for sub in schema[kw]]
            matched = sum(1 for r in results if not r)
            if kw == "allOf" and matched != len(results):
                errs += [e for r in results for e in r]
            elif kw == "anyOf" and matched == 0:
                errs.append(f"{where}: matches none of anyOf: {results}")
            elif kw == "oneOf" and matched != 1:
                errs.append(f"{where}: matches {matched} of oneOf (exactly 1 wanted): {results}")
        else:
            raise AssertionError(f"{where}: schema keyword {kw!r} is not supported by this test's "
                                 f"validator; teach it the keyword before using it")
    return errs


def assert_matches(schema, value, what):
    errs = schema_errors(schema, value)
    assert not errs, f"{what} does not match the document:\n  " + "\n  ".join(errs)


WATCHED_HEADERS = {"x-request-id", "cache-control", "allow", "retry-after", "x-ratelimit-limit",
                   "x-ratelimit-remaining", "x-ratelimit-reset"}


def check_against(spec, resp, what):
    """Check a live response against an OpenAPI response object."""
    spec = deref(DOC, spec)
    ctype = resp.headers.get("Content-Type", "")
    media = ctype.split(";")[0].strip().lower()
    assert media in spec.get("content", {}), \
        f"{what}: Content-Type {ctype!r} is not documented ({list(spec.get('content', {}))})"
    schema = spec["content"][media]["schema"]
    if media == "application/json":
        body = json.loads(resp.content)
    else:
        body = resp.content.decode("utf-8")
    assert_matches(schema, body, f"{what}: body {resp.content[:300]!r}")

    documented = {name.lower(): deref(DOC, h) for name, h in spec.get("headers", {}).items()}
    for name, h in documented.items():
        value = resp.headers.get(name)
        if value is None:
            assert not h.get("required"), f"{what}: required header {name} is missing"
            continue
        hschema = deref(DOC, h["schema"])
        if hschema.get("type") == "integer":
            assert re.fullmatch(r"[0-9]+", value), f"{what}: header {name}: {value!r}"
            value = int(value)
        assert_matches(h["schema"], value, f"{what}: header {name}")
    for name in resp.headers:
        low = name.lower()
        if low in WATCHED_HEADERS or low.startswith("x-"):
            assert low in documented, f"{what}: header {name} is sent but not documented"
    return body


def check_operation(path, method, resp, expect_status, expect_message=None):
    """Check a response to a documented operation; returns the parsed body."""
    what = f"{method} {path} -> {resp.status_code}"
    assert resp.status_code == expect_status, \
        f"{method} {path}: expected {expect_status}, got {resp.status_code} {resp.text[:300]!r}"
    op = DOC["paths"][path][method.lower()]
    spec = op["responses"].get(str(resp.status_code))
    assert spec is not None, f"{what}: status not documented for this operation"
    body = check_against(spec, resp, what)
    if expect_message is not None:
        assert body.get("message") == expect_message, (what, body)
    return body
