"""``/openapi.json`` documents ``POST /jobs/<task_type>`` per plugin, and the documented fields match the code.

Two halves:

* the served schema (session deployment): one route per built-in plugin with ``file``, ``priority`` and the
  plugin's ``form_fields`` (types and defaults of PROTOCOL.md §3), the answers, unique operation ids; extra
  plugins that import are documented too; the generic route is hidden but still answers as before;
* the declarations against ``parse_params`` (no server): every documented default is what an omitted field
  gives, every documented range and enum is accepted at its edges and refused just outside, required fields
  are required, and no parsed field is undocumented. So the schema cannot drift from the code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from cl_compute.plugins import PLUGIN_MODULES, get_plugin, get_plugin_class
from cl_compute.plugins.base import ParamError

BUILTIN = sorted(PLUGIN_MODULES)
UPLOAD = "x.jpg"
_MISSING = object()

#: PROTOCOL.md §3: field -> (JSON Schema type, default or _MISSING) for every built-in route.
PROTOCOL_FIELDS: dict[str, dict[str, tuple[str, object]]] = {
    "clip_embedding": {"normalize": ("boolean", True)},
    "dino_embedding": {"normalize": ("boolean", True)},
    "exif": {"tags": ("string", "")},
    "face_detection": {"confidence_threshold": ("number", 0.7), "nms_threshold": ("number", 0.4)},
    "face_embedding": {"normalize": ("boolean", True)},
    "hash": {"algorithm": ("string", "sha512")},
    "hls_streaming": {
        "variants": ("string", '[{"resolution":720,"bitrate":3500},{"resolution":480,"bitrate":1500}]'),
        "include_original": ("boolean", False),
    },
    "image_conversion": {"format": ("string", _MISSING), "quality": ("integer", 85)},
    "media_thumbnail": {
        "width": ("integer", _MISSING),
        "height": ("integer", _MISSING),
        "maintain_aspect_ratio": ("boolean", True),
    },
}
PROTOCOL_ENUMS = {
    ("hash", "algorithm"): ["sha512", "md5"],
    ("image_conversion", "format"): ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"],
}


def test_the_nine_builtins() -> None:
    assert sorted(PROTOCOL_FIELDS) == BUILTIN


# -- the served schema -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(http: httpx.Client) -> dict[str, Any]:
    r = http.get("/openapi.json")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, dict)
    return body


def _resolve(openapi: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    node: Any = openapi
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _form_schema(openapi: Mapping[str, Any], task_type: str) -> Mapping[str, Any]:
    op = openapi["paths"][f"/jobs/{task_type}"]["post"]
    return _resolve(openapi, op["requestBody"]["content"]["multipart/form-data"]["schema"])


@pytest.mark.parametrize("task_type", BUILTIN)
def test_plugin_route_is_documented_with_its_fields(openapi: dict[str, Any], task_type: str) -> None:
    op = openapi["paths"][f"/jobs/{task_type}"]["post"]
    assert op["tags"] == ["job"]
    assert task_type in op["summary"]
    assert op["requestBody"]["required"] is True
    schema = _form_schema(openapi, task_type)
    props = schema["properties"]
    assert props["file"]["type"] == "string"
    assert props["file"]["format"] == "binary"
    assert {k: props["priority"].get(k) for k in ("type", "minimum", "maximum", "default")} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10,
        "default": 5,
    }
    expected = PROTOCOL_FIELDS[task_type]
    assert set(props) == {"file", "priority", *expected}
    assert "additionalProperties" not in schema  # every field is declared
    for name, (json_type, default) in expected.items():
        assert props[name]["type"] == json_type, name
        if default is _MISSING:
            assert "default" not in props[name], name
        else:
            assert props[name]["default"] == default, name
            assert type(props[name]["default"]) is type(default), name
        if (task_type, name) in PROTOCOL_ENUMS:
            assert props[name]["enum"] == PROTOCOL_ENUMS[task_type, name]
    assert schema["required"] == (["file", "format"] if task_type == "image_conversion" else ["file"])
    # what is served is exactly the plugin's declaration
    cls = get_plugin_class(task_type)
    assert {name: props[name] for name in cls.form_fields} == json.loads(json.dumps(cls.form_fields))


@pytest.mark.parametrize("task_type", BUILTIN)
def test_plugin_route_documents_its_answers(openapi: dict[str, Any], task_type: str) -> None:
    responses = openapi["paths"][f"/jobs/{task_type}"]["post"]["responses"]
    ok = _resolve(openapi, responses["200"]["content"]["application/json"]["schema"])
    assert set(ok["properties"]) == {"job_id", "status", "task_type"}
    assert sorted(ok["required"]) == ["job_id", "status", "task_type"]
    invalid = _resolve(openapi, responses["422"]["content"]["application/json"]["schema"])
    assert invalid["properties"]["detail"]["type"] == "array"
    assert {"401", "403", "503"} <= set(responses)


def test_operation_ids_are_unique_and_the_generic_route_is_hidden(openapi: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in openapi["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids))
    assert "/jobs/{task_type}" not in openapi["paths"]
    posts = {p for p, item in openapi["paths"].items() if p.startswith("/jobs/") and "post" in item}
    assert {f"/jobs/{t}" for t in BUILTIN} <= posts


def test_extra_plugins_are_documented_when_they_import(openapi: dict[str, Any]) -> None:
    # The session deployment configures the test plugins (no form_fields) and "broken" (module missing).
    schema = _form_schema(openapi, "echo")
    assert set(schema["properties"]) == {"file", "priority"}
    assert schema["additionalProperties"] == {"type": "string"}  # undeclared fields are passed on as text
    assert "/jobs/broken" not in openapi["paths"]


def test_routes_answer_as_before(http: httpx.Client) -> None:
    # a documented route validates through the same handler (the errors of the generic route, together)
    r = http.post("/jobs/image_conversion", data={"quality": "0", "priority": "11"})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "file"], ["body", "priority"], ["body", "format"]]
    r = http.post("/jobs/hash", files={"file": ("a.jpg", b"x")}, data={"algorithm": "sha256"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "algorithm"]
    # GET / DELETE of a path that is also a job route still reach the job routes
    assert http.get("/jobs/hash").json() == {"detail": "Job hash not found"}
    assert http.delete("/jobs/hash").status_code == 404
    # the hidden generic route still answers unknown task types
    r = http.post("/jobs/no_such_task", files={"file": ("a.jpg", b"x")})
    assert (r.status_code, r.json()) == (404, {"detail": "Unknown task type: no_such_task"})


# -- declarations against parse_params ------------------------------------------------------------------------


def _fields(task_type: str) -> Mapping[str, Mapping[str, Any]]:
    return get_plugin_class(task_type).form_fields


def _cases(predicate: Any) -> list[tuple[str, str]]:
    return [(t, f) for t in BUILTIN for f, schema in _fields(t).items() if predicate(schema)]


def _text(value: object) -> str:
    """A documented value as a form sends it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _base_form(task_type: str) -> dict[str, str]:
    """The required fields with a valid value (the first of their enum, or their minimum)."""
    cls = get_plugin_class(task_type)
    form: dict[str, str] = {}
    for name in cls.required_form_fields:
        schema = cls.form_fields[name]
        value = schema["enum"][0] if "enum" in schema else schema.get("minimum", schema.get("default"))
        form[name] = _text(value)
    return form


def _parse(task_type: str, **fields: str) -> dict[str, object]:
    return get_plugin(task_type).parse_params({**_base_form(task_type), **fields}, UPLOAD)


def _refused(task_type: str, name: str, value: str) -> ParamError:
    with pytest.raises(ParamError) as info:
        _parse(task_type, **{name: value})
    assert info.value.field == name, (value, info.value)
    return info.value


@pytest.mark.parametrize("task_type", BUILTIN)
def test_declared_fields_are_the_parsed_fields(task_type: str) -> None:
    cls = get_plugin_class(task_type)
    assert cls.form_fields, "every built-in plugin declares its form fields"
    assert set(_parse(task_type)) - {"output_path"} == set(cls.form_fields)
    assert set(cls.required_form_fields) <= set(cls.form_fields)
    for name, schema in cls.form_fields.items():
        assert schema.get("type") in ("boolean", "integer", "number", "string"), name
        assert isinstance(schema.get("description"), str), name
        assert schema["description"], name


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: "default" in s))
def test_documented_default_is_what_an_omitted_field_gives(task_type: str, name: str) -> None:
    schema = _fields(task_type)[name]
    default = schema["default"]
    omitted = get_plugin(task_type).parse_params(_base_form(task_type), UPLOAD)[name]
    if schema.get("contentMediaType") == "application/json":
        assert json.loads(default) == omitted
    elif schema["type"] != "string" or "enum" in schema:
        assert default == omitted
        assert type(default) is type(omitted)
    # sending the documented default is the same as sending nothing (also for texts parsed into structures,
    # e.g. exif's "" -> [] tags)
    assert _parse(task_type, **{name: _text(default)})[name] == omitted


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: "default" not in s))
def test_field_without_default_is_required_or_none(task_type: str, name: str) -> None:
    cls = get_plugin_class(task_type)
    if name in cls.required_form_fields:
        form = {k: v for k, v in _base_form(task_type).items() if k != name}
        with pytest.raises(ParamError) as info:
            get_plugin(task_type).parse_params(form, UPLOAD)
        assert (info.value.field, info.value.error_type) == (name, "missing")
    else:
        assert _parse(task_type)[name] is None


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: "minimum" in s or "maximum" in s))
def test_documented_range_edges(task_type: str, name: str) -> None:
    schema = _fields(task_type)[name]
    integer = schema["type"] == "integer"
    assert integer or schema["type"] == "number"
    for bound, outward in (("minimum", -1), ("maximum", 1)):
        if bound not in schema:
            continue
        edge = schema[bound]
        assert _parse(task_type, **{name: _text(edge)})[name] == edge
        outside = edge + outward if integer else math.nextafter(float(edge), outward * math.inf)
        _refused(task_type, name, _text(outside))


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: "enum" in s))
def test_documented_enum_is_exactly_accepted(task_type: str, name: str) -> None:
    values = _fields(task_type)[name]["enum"]
    for value in values:
        assert _parse(task_type, **{name: _text(value)})[name] == value
    for bad in (f"{values[0]}x", "nope", values[-1][:-1]):
        if bad not in values:
            _refused(task_type, name, bad)


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: s.get("type") == "boolean"))
def test_documented_booleans(task_type: str, name: str) -> None:
    assert _parse(task_type, **{name: "true"})[name] is True
    assert _parse(task_type, **{name: "false"})[name] is False
    _refused(task_type, name, "maybe")


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: s.get("type") in ("integer", "number")))
def test_documented_numbers_refuse_text(task_type: str, name: str) -> None:
    _refused(task_type, name, "abc")
    if _fields(task_type)[name]["type"] == "integer":
        _refused(task_type, name, "1.5")


@pytest.mark.parametrize(("task_type", "name"), _cases(lambda s: "contentSchema" in s))
def test_documented_json_content_edges(task_type: str, name: str) -> None:
    """A JSON-array field (hls ``variants``): item ranges, required keys and the array's length limits."""
    content = _fields(task_type)[name]["contentSchema"]
    assert content["type"] == "array"
    item = content["items"]
    props: Mapping[str, Mapping[str, Any]] = item["properties"]
    lows = {k: p["minimum"] for k, p in props.items()}

    def send(items: list[dict[str, object]]) -> object:
        return _parse(task_type, **{name: json.dumps(items)})[name]

    for key, prop in props.items():
        for bound, outward in (("minimum", -1), ("maximum", 1)):
            good = {**lows, key: prop[bound]}
            assert send([good]) == [good]
            with pytest.raises(ParamError):
                send([{**lows, key: prop[bound] + outward}])
    for key in item["required"]:
        with pytest.raises(ParamError):
            send([{k: v for k, v in lows.items() if k != key}])
    # length: distinct items by stepping the first property
    first = next(iter(props))
    many = [{**lows, first: lows[first] + i} for i in range(content["maxItems"] + 1)]
    assert len(send(many[: content["maxItems"]])) == content["maxItems"]  # type: ignore[arg-type]
    with pytest.raises(ParamError):
        send(many)
    assert content["minItems"] == 1
    with pytest.raises(ParamError):
        send([])
    with pytest.raises(ParamError):
        _parse(task_type, **{name: "not json"})
