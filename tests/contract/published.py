"""The published API document (published-openapi.json) and one check of a response
against it: the status code is documented for the operation, the content type is one
it documents for that status, and the body validates against its schema.

The document is used as published, with the few corrections in CORRECTIONS: places
where the document contradicts itself, so that no correct response could pass.
test_published_contract.py shows for each that it is needed.
"""

import copy
import json
from pathlib import Path

import requests
import schemathesis
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.jsonschema.bundler import unbundle_path
from schemathesis.core.transport import Response
from schemathesis.openapi.checks import JsonSchemaError

DOCUMENT_PATH = Path(__file__).with_name("published-openapi.json")
PUBLISHED = json.loads(DOCUMENT_PATH.read_text())
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def operation(method: str, path: str) -> dict:
    return PUBLISHED["paths"][path][method.lower()]


def _nullable(*pointer: str):
    """The published example shows null where the schema says only its type."""

    def correct(document: dict) -> None:
        node = document
        for part in pointer:
            node = node[part]
        node["nullable"] = True

    return correct


def _one_of_by_key(document: dict) -> None:
    # Neither shape has `required`, so every object matches both and `oneOf` (exactly
    # one) can never hold. The operation says what tells them apart: `{lead}` for `?id=`,
    # `{leads, lists, pagination}` otherwise.
    single, page = document["components"]["schemas"]["GetLeadsResponse"]["oneOf"]
    single["required"] = ["lead"]
    page["required"] = ["leads"]


LEAD = ("components", "schemas", "Lead", "properties")
PARENT = (
    "components",
    "schemas",
    "GetRepliesResponse",
    "properties",
    "replies",
    "items",
    "properties",
    "parentMessages",
    "items",
    "properties",
)


def example(method: str, path: str, status: int, name: str):
    """A published response example: `name` is an `examples` key, or "example"."""
    content = operation(method, path)["responses"][str(status)]["content"]["application/json"]
    if name == "example":
        return content["example"]
    return content["examples"][name]["value"]


def _filled(body: dict) -> dict:
    """The published list example with no nulls left in its leads."""
    leads = [{**lead, "lastName": "Doe", "phone": "+12025550100"} for lead in body["leads"]]
    return {**body, "leads": leads}


# (what, correction, a response that shows the contradiction: method, path, status,
# body). The bodies are published examples (the first one with its nulls filled in).
CORRECTIONS = [
    (
        "GetLeadsResponse is oneOf two shapes that every object matches: {lead} or {leads}",
        _one_of_by_key,
        ("get", "/api/leads", 200, _filled(example("get", "/api/leads", 200, "list"))),
    ),
    (
        "Lead.lastName may be null (as in the published GET /api/leads examples)",
        _nullable(*LEAD, "lastName"),
        ("get", "/api/leads", 200, example("get", "/api/leads", 200, "single")),
    ),
    (
        "Lead.phone may be null (as in the published GET /api/leads examples)",
        _nullable(*LEAD, "phone"),
        ("get", "/api/leads", 200, example("get", "/api/leads", 200, "single")),
    ),
    (
        "parentMessages[].batchId may be null (as in the published GET /api/replies example)",
        _nullable(*PARENT, "batchId"),
        ("get", "/api/replies", 200, example("get", "/api/replies", 200, "example")),
    ),
    (
        "parentMessages[].stepIndex may be null (as in the published GET /api/replies example)",
        _nullable(*PARENT, "stepIndex"),
        ("get", "/api/replies", 200, example("get", "/api/replies", 200, "example")),
    ),
]


def corrected(document: dict, corrections=CORRECTIONS) -> dict:
    document = copy.deepcopy(document)
    for _what, correct, _example in corrections:
        correct(document)
    return document


def load(document: dict):
    return schemathesis.openapi.from_dict(document)


SCHEMA = load(corrected(PUBLISHED))


def published_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in PUBLISHED["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def documented_statuses(method: str, path: str) -> set[int]:
    return {int(status) for status in operation(method, path)["responses"]}


def as_schemathesis_response(
    method: str, url: str, status: int, headers: dict, content: bytes
) -> Response:
    request = requests.Request(method, f"http://testserver{url}").prepare()
    return Response(
        status_code=status,
        headers={name.lower(): [value] for name, value in headers.items()},
        content=content,
        request=request,
        elapsed=0.0,
        verify=True,
    )


def _describe(failure: Failure) -> str:
    if isinstance(failure, JsonSchemaError):
        path = unbundle_path(list(failure.schema_path), failure._name_to_uri or {})
        schema_path = "/".join(str(part) for part in path)
        instance_path = "/".join(str(part) for part in failure.instance_path) or "(the body)"
        return (
            f"body violates the published schema at #/{schema_path}"
            f" (value at {instance_path}): {failure._raw_message}"
        )
    return f"{failure.title}: {failure.message.strip().splitlines()[0]}"


def problems(method: str, path: str, response, schema=None) -> list[str]:
    """What in `response` (a Django test client response) differs from the published
    operation `method path`, each naming the operation, the status and what failed."""
    schema = schema or SCHEMA
    method = method.upper()
    status = response.status_code
    label = f"{method} {path} -> {status}"
    responses = operation(method, path)["responses"]
    if str(status) not in responses:
        documented = ", ".join(sorted(responses))
        return [f"{label}: status {status} is not documented (documented: {documented})"]
    found: list[str] = []
    media_type = response.get("Content-Type", "").split(";")[0].strip()
    documented_types = list((responses[str(status)].get("content") or {}).keys())
    if documented_types and media_type not in documented_types:
        found.append(
            f"{label}: content type {media_type or '(none)'!r} is not documented"
            f" (documented: {', '.join(documented_types)})"
        )
        return found
    converted = as_schemathesis_response(
        method,
        getattr(response, "request", {}).get("PATH_INFO", path),
        status,
        dict(response.items()),
        response.content,
    )
    try:
        schema[path][method].validate_response(converted)
    except FailureGroup as group:
        found += [f"{label}: {_describe(failure)}" for failure in group.exceptions]
    except Failure as failure:
        found.append(f"{label}: {_describe(failure)}")
    return found
