"""docs/openapi.json is the document the app serves, and a valid OpenAPI 3.1 document.

A change to the contract is then a reviewed diff of that file. The document is built from the
app object (``app.openapi()``), as /openapi.json serves it when DOCS_ENABLED.
"""

from __future__ import annotations

import difflib
import json

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from heliox.api.openapi import render
from heliox.app import create_app
from tests.helpers import make_settings
from tests.servers import REPO_ROOT

SNAPSHOT = REPO_ROOT / "docs" / "openapi.json"
REFRESH = "make openapi"
MAX_DIFF_LINES = 200


def test_the_snapshot_is_the_served_document() -> None:
    served = render(create_app(make_settings()).openapi())
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if served == committed:
        return
    diff = list(
        difflib.unified_diff(
            committed.splitlines(),
            served.splitlines(),
            "docs/openapi.json (committed)",
            "app.openapi() (served)",
            lineterm="",
        )
    )
    shown = "\n".join(diff[:MAX_DIFF_LINES])
    more = f"\n... {len(diff) - MAX_DIFF_LINES} more lines" if len(diff) > MAX_DIFF_LINES else ""
    raise AssertionError(
        f"The OpenAPI document changed without its snapshot:\n{shown}{more}\n\n"
        f"If the change is meant, run `{REFRESH}` and commit docs/openapi.json with it."
    )


def test_the_snapshot_is_a_valid_openapi_3_1_document() -> None:
    document = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.1.")
    validate(document)  # picks the 3.1 validator from the "openapi" field


def test_the_validator_catches_a_broken_document() -> None:
    # The check above proves something: a dangling operation link fails it.
    document = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    document["paths"]["/api/v1/items"]["post"]["responses"]["201"]["links"] = "not a map"
    try:
        validate(document)
    except OpenAPIValidationError:
        return
    raise AssertionError("openapi-spec-validator accepted an invalid document")
