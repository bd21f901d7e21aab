"""OpenAPI links: which field of an answer addresses which follow-up operation.

A link tells a client (a generated SDK, Swagger UI, a fuzzer's stateful phase) that, say,
the ``id`` and ``jobId`` of an upload's 201 are the ``artifact_id`` and ``job_id`` of the
fetch, the download and the delete. Litestar's ``ResponseSpec`` has no ``links``, so an
operation that produces something names :class:`LinkedOperation` as its ``operation_class``
and the links are attached here, from one table keyed by operation id and status.

Example:
    >>> from litestar import get
    >>> @get("/fleet/artifacts/{artifact_id:str}", operation_id="getArtifact",
    ...      operation_class=LinkedOperation)
    ... async def get_by_id(artifact_id: str) -> None: ...
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import Link, OpenAPIResponse, Operation

# Runtime expressions (OpenAPI 3.1, "Runtime Expressions"): a field of the answer's JSON body,
# or a path parameter of the request that was answered (a 204 has no body to point into).
BODY_ID = "$response.body#/id"
BODY_JOB = "$response.body#/jobId"
BODY_ARTIFACT = "$response.body#/artifactId"
FIRST_ITEM_ID = "$response.body#/items/0/id"
FIRST_ITEM_JOB = "$response.body#/items/0/jobId"
REQUEST_ARTIFACT = "$request.path.artifact_id"
REQUEST_JOB = "$request.path.job_id"

Params = dict[str, str]

# One artifact, from an answer carrying it (ArtifactOut, UploadTicket): job-scoped and by id alone.
_IN_JOB: Params = {"job_id": BODY_JOB, "artifact_id": BODY_ID}
_BY_ID: Params = {"artifact_id": BODY_ID}
_JOB: Params = {"job_id": BODY_JOB}


def _links(targets: dict[str, Params]) -> dict[str, Link]:
    # The link's name is the target's operation id: unique within one response, and readable.
    return {target: Link(operation_id=target, parameters=dict(params)) for target, params in targets.items()}


# What can follow an answer that carries an artifact: read it, download it, change it, share it,
# delete it; and the job it belongs to. Both addressing forms, so both code paths are reached.
_ON_ARTIFACT: dict[str, Params] = {
    "getJobArtifact": _IN_JOB,
    "getArtifact": _BY_ID,
    "downloadJobArtifact": _IN_JOB,
    "downloadArtifact": _BY_ID,
    "updateArtifact": _BY_ID,
    "archiveJobArtifact": _IN_JOB,
    "shareArtifact": _BY_ID,
    "shareJobArtifact": _IN_JOB,
    "listArtifactShares": _BY_ID,
    "deleteJobArtifact": _IN_JOB,
    "deleteArtifact": _BY_ID,
    "listArtifacts": _JOB,
    "getJobManifest": _JOB,
}
_ON_SESSION: dict[str, Params] = {
    "sendUploadChunk": {"session_id": BODY_ID},
    "getUploadSession": {"session_id": BODY_ID},
    "completeUploadSession": {"session_id": BODY_ID},
    "abortUploadSession": {"session_id": BODY_ID},
}
_ON_JOB_PAGE: dict[str, Params] = {
    "listArtifacts": {"job_id": FIRST_ITEM_JOB},
    "getJobManifest": {"job_id": FIRST_ITEM_JOB},
    "getJobRetention": {"job_id": FIRST_ITEM_JOB},
    "deleteJobArtifacts": {"job_id": FIRST_ITEM_JOB},
}
_ON_SHARE: dict[str, Params] = {
    "revokeShare": {"share": BODY_ID},
    "listArtifactShares": {"artifact_id": BODY_ARTIFACT},
}
_ON_DELETED: dict[str, Params] = {  # 204, no body: the request's own path names what was deleted
    "getArtifact": {"artifact_id": REQUEST_ARTIFACT},
    "undeleteArtifact": {"artifact_id": REQUEST_ARTIFACT},
}
# A job's retention applies to its later uploads: a resumable one names the job in its body.
_SESSION_IN_JOB = Link(operation_id="openUploadSession", request_body={"jobId": BODY_JOB})
_ON_RETENTION: dict[str, Params] = {"getJobRetention": _JOB, "setJobRetention": _JOB, "listArtifacts": _JOB}

LINKS: dict[str, dict[str, dict[str, Link]]] = {
    # Creating an artifact: through the service, a resumable session, or a direct upload.
    "uploadArtifact": {"201": {**_links(_ON_ARTIFACT), "openUploadSession": _SESSION_IN_JOB}},
    "openUploadSession": {"201": _links(_ON_SESSION)},
    "sendUploadChunk": {"200": _links(_ON_SESSION)},
    "completeUploadSession": {"201": _links(_ON_ARTIFACT)},
    "startDirectUpload": {"201": _links({"finalizeDirectUpload": _IN_JOB, "getJobArtifact": _IN_JOB})},
    "finalizeDirectUpload": {"200": _links(_ON_ARTIFACT)},
    # Reading and changing one: every answer carrying the artifact leads on to the others.
    "getJobArtifact": {"200": _links(_ON_ARTIFACT)},
    "getArtifact": {"200": _links(_ON_ARTIFACT)},
    "updateArtifact": {"200": _links(_ON_ARTIFACT)},
    "updateJobArtifact": {"200": _links(_ON_ARTIFACT)},
    "archiveJobArtifact": {"200": _links({**_ON_ARTIFACT, "restoreArtifact": _BY_ID})},
    "archiveArtifact": {"200": _links({**_ON_ARTIFACT, "restoreJobArtifact": _IN_JOB})},
    "restoreJobArtifact": {"200": _links(_ON_ARTIFACT)},
    "restoreArtifact": {"200": _links(_ON_ARTIFACT)},
    "undeleteJobArtifact": {"200": _links(_ON_ARTIFACT)},
    "undeleteArtifact": {"200": _links(_ON_ARTIFACT)},
    "deleteJobArtifact": {
        "204": _links(
            {**_ON_DELETED, "undeleteJobArtifact": {"job_id": REQUEST_JOB, "artifact_id": REQUEST_ARTIFACT}}
        )
    },
    "deleteArtifact": {"204": _links(_ON_DELETED)},
    # Lists: their first item.
    "listArtifacts": {"200": _links({"getArtifact": {"artifact_id": FIRST_ITEM_ID}})},
    "listJobs": {"200": _links(_ON_JOB_PAGE)},
    # Jobs, retention and share links.
    "sealJob": {"200": _links({"getJobManifest": _JOB})},
    "getJobRetention": {"200": {**_links(_ON_RETENTION), "openUploadSession": _SESSION_IN_JOB}},
    "setJobRetention": {"200": {**_links(_ON_RETENTION), "openUploadSession": _SESSION_IN_JOB}},
    "shareArtifact": {"201": _links(_ON_SHARE)},
    "shareJobArtifact": {"201": _links(_ON_SHARE)},
}


@dataclass
class LinkedOperation(Operation):
    """An operation whose responses carry the links :data:`LINKS` gives its operation id."""

    def __post_init__(self) -> None:
        """Attach the links to the responses Litestar made (each status must be one it documents)."""
        for status, links in LINKS.get(self.operation_id or "", {}).items():
            response = (self.responses or {})[status]  # a KeyError: the table names a status not answered
            if isinstance(response, OpenAPIResponse):
                response.links = {**(response.links or {}), **links}
