"""Schema post-processing: the answers every operation can give, documented once."""

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
COMMON = {
    "401": "No API key, or an invalid or revoked one.",
    "429": "Too many requests for this key; see the Retry-After header.",
}


def add_common_responses(result, generator, request, public):
    """Every operation may answer 401 and 429; lists may answer 404 for a page past
    the end, and anything with an id in its path 404 for an unknown id."""
    if "ErrorResponse" not in result.get("components", {}).get("schemas", {}):
        return result
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            extra = dict(COMMON)
            paginated = any(
                p.get("name") == "page" for p in operation.get("parameters", [])
            )
            if "{" in path or paginated:
                extra["404"] = "No such object, or a page past the last one."
            for code, description in extra.items():
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return result
