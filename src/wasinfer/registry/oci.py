"""A client of the OCI Distribution API for model artifacts (push, pull, tags, resolve, tag, delete).

Written on httpx rather than taken from the ORAS Python SDK because a model version must keep
one digest everywhere: the SDK re-serialises the manifest it is given, so what it uploads is not
`ModelArtifact.manifest()` byte for byte, and it reports registry errors by logging rather than
raising. What is here is the part of the spec a model needs, checked against Docker Distribution
(Debian's `docker-registry`) in tests/registry/test_oci.py:

- blobs go up only when a HEAD says the registry lacks them, in one PUT when small and in
  PATCH chunks when larger than `chunk_size`; the manifest goes last, so a tag never names a
  version whose blobs are missing;
- a pull checks the manifest against Docker-Content-Digest and against the digest it was asked
  for, and every blob against its descriptor, before anything is returned;
- a signature (or any other artifact about a model) is attached as a referrer: its own manifest
  whose `subject` is the model manifest's descriptor, found with `GET /v2/<name>/referrers/<digest>`;
  where the registry lacks that API (it answers 404, as Docker Distribution 2.8 does; or a push gets
  no `OCI-Subject` header back), the OCI 1.1 referrers tag schema stands in: the tag
  `sha256-<hex of the subject digest>` holds an image index listing the referrers, updated on push
  and read on pull, so tools following the spec find each other's signatures either way;
- a 401 is answered once per request: with `Basic` the client sends the username and password
  (and keeps sending them), with `Bearer realm=…,service=…,scope=…` it fetches a token from the
  realm (with those credentials if it has them, else anonymously) and keeps it for that scope.
  A username of `<token>` means the password is an identity token (a Docker credential helper's
  answer for OAuth2 logins): it is traded for the scope's token by the OAuth2 refresh-token
  grant (a POST to the realm), as Docker does, and never sent as Basic.

A client is not thread-safe; use one per thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from collections.abc import Callable
from typing import Any

import httpx

from wasinfer.registry.artifact import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    SOURCE_MEDIA_TYPES,
    WASM_MEDIA_TYPE,
    ModelArtifact,
    sha256_digest,
)
from wasinfer.registry.credentials import IDENTITY_TOKEN_USERNAME

Progress = Callable[[int, int], None]

# Manifests bigger than this are refused unread (the spec lets registries refuse above 4 MiB).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
# How many pages of a tag list to follow before deciding the registry's Link headers loop.
MAX_TAG_PAGES = 10_000
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REFERRERS_TAG = re.compile(r"sha256-[0-9a-f]{64}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_MODEL_LAYER_TYPES = {WASM_MEDIA_TYPE, *SOURCE_MEDIA_TYPES.values()}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"  # the config of an artifact that needs none
EMPTY_BLOB = b"{}"


class RegistryError(Exception):
    """A registry operation failed; the message says what (HTTP status, the registry's error, the path).

    `status` is the HTTP status when there was a response (404 lets a caller tell "no such
    version" from an outage) and `code` the registry's first error code (e.g. MANIFEST_UNKNOWN).
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _registry_errors(response: httpx.Response) -> tuple[str | None, str]:
    """The first error code and all `code: message` pairs of a registry error body (spec format)."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return None, response.text[:200].strip()
    parts = [f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)]
    code = errors[0].get("code") if errors and isinstance(errors[0], dict) else None
    return code, "; ".join(parts)


def _canonical_scope(scope: str) -> str:
    """Registries list a scope's actions in no fixed order ("pull,push" or "push,pull"): one cache key for both."""
    parts = []
    for item in scope.split():
        resource, _, actions = item.rpartition(":")
        parts.append(f"{resource}:{','.join(sorted(actions.split(',')))}" if resource else item)
    return " ".join(sorted(parts))


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _action(method: str) -> str:
    """The kind of access a request needs, which is what a bearer token's scope is about."""
    return {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")


class OciClient:
    """One registry (`host[:port]`), spoken to over https, or plain http with `plain_http`."""

    def __init__(self, registry: str, *, plain_http: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.registry = registry
        self.plain_http = plain_http
        self.chunk_size = chunk_size
        self._scheme = "http" if plain_http else "https"
        self._auth = (username or "", password or "") if username is not None or password is not None else None
        self._http = httpx.Client(base_url=f"{self._scheme}://{registry}", timeout=timeout)
        self._use_basic = False  # the registry asked for Basic: send it from then on, saving a 401 per request
        self._tokens: dict[str, str] = {}  # challenge (realm, service, scope) → bearer token
        self._token_for: dict[tuple[str, str], str] = {}  # (repository, action) → the challenge key it needed

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OciClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport and auth -------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send, turning transport failures into a RegistryError that says what to check."""
        try:
            return self._http.send(request, stream=stream, follow_redirects=request.method == "GET")
        except httpx.TimeoutException as exc:
            raise RegistryError(f"registry {self.registry}: {request.method} {request.url.path} timed out "
                                f"({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            hint = ""
            if not self.plain_http and (isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc)):
                hint = (" (TLS handshake failed: if the registry serves plain http, use --plain-http or set "
                        "WASINFER_REGISTRY_PLAIN_HTTP=1)")
            elif isinstance(exc, httpx.ConnectError):
                hint = " (is the registry running, and is the address right?)"
            raise RegistryError(f"cannot connect to registry {self.registry} over {self._scheme}: {exc}{hint}") \
                from exc

    def _request(self, method: str, url: str, repository: str, *, headers: dict[str, str] | None = None,
                 content: bytes | None = None, params: dict[str, str] | None = None,
                 stream: bool = False) -> httpx.Response:
        """A request with the registry's auth: answer one 401 with Basic or a bearer token, then give up."""
        action = _action(method)
        sent_token: str | None = None
        for attempt in range(2):
            request = self._http.build_request(method, url, headers=headers, content=content, params=params)
            sent_token = None
            if self._use_basic and self._auth is not None:
                request.headers["Authorization"] = _basic_header(*self._auth)
            elif (key := self._token_for.get((repository, action))) and key in self._tokens:
                sent_token = self._tokens[key]
                request.headers["Authorization"] = f"Bearer {sent_token}"
            response = self._send(request, stream=stream)
            if response.status_code != 401 or attempt == 1:
                break
            scheme, params_ = _challenge(response.headers.get("WWW-Authenticate", ""))
            response.close()
            if scheme == "basic":
                if self._auth is None or self._use_basic or self._auth[0] == IDENTITY_TOKEN_USERNAME:
                    break
                self._use_basic = True
            elif scheme == "bearer" and "realm" in params_:
                scope = _canonical_scope(params_.get("scope", ""))
                key = "\n".join((params_["realm"], params_.get("service", ""), scope))
                if key not in self._tokens or self._tokens[key] == sent_token:  # none yet, or it expired
                    self._tokens[key] = self._fetch_token(params_)
                self._token_for[(repository, action)] = key
            else:
                break
        if response.status_code == 401:
            if stream:
                response.read()
            code, detail = _registry_errors(response)
            who = (f"refused the credentials of user {self._auth[0]!r}" if self._auth is not None
                   else "requires credentials (--username/--password, WASINFER_REGISTRY_USERNAME/"
                        "WASINFER_REGISTRY_PASSWORD or a Docker config.json)")
            raise RegistryError(f"registry {self.registry} {who}: HTTP 401 on {method} {request.url.path}"
                                f"{': ' + detail if detail else ''}", 401, code)
        return response

    def _fetch_token(self, challenge: dict[str, str]) -> str:
        """A bearer token from the challenge's realm, for its service and scope."""
        params = httpx.QueryParams({"service": challenge["service"]} if challenge.get("service") else {})
        for scope in challenge.get("scope", "").split():
            params = params.add("scope", scope)
        realm = challenge["realm"]
        request = self._http.build_request("GET", realm, params=params)
        if self._auth is not None:
            request.headers["Authorization"] = _basic_header(*self._auth)
        if self._auth is not None and self._auth[0] == IDENTITY_TOKEN_USERNAME:
            # OAuth2: the identity token is a refresh token; the scopes go space-separated, as Docker sends them
            form = {"grant_type": "refresh_token", "refresh_token": self._auth[1], "client_id": "wasinfer",
                    "scope": challenge.get("scope", ""), **({"service": challenge["service"]}
                                                           if challenge.get("service") else {})}
            request = self._http.build_request("POST", realm, data=form)
        response = self._send(request)
        if response.status_code != 200:
            who = (("an identity token" if self._auth[0] == IDENTITY_TOKEN_USERNAME else f"user {self._auth[0]!r}")
                   if self._auth is not None else "anonymous access")
            raise RegistryError(f"token server {realm} refused {who} for scope {challenge.get('scope', '')!r}: "
                                f"HTTP {response.status_code} {response.text[:200].strip()}",
                                response.status_code)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {realm} answered without a token")
        return token

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        if not response.is_closed:
            response.read()
        code, detail = _registry_errors(response)
        return RegistryError(f"{what}: HTTP {response.status_code} {response.reason_phrase} on "
                             f"{response.request.method} {response.request.url.path}"
                             f"{': ' + detail if detail else ''}", response.status_code, code)

    # -- manifests ----------------------------------------------------------------------------

    def _manifest_url(self, repository: str, reference: str) -> str:
        return f"/v2/{repository}/manifests/{reference}"

    def _get_manifest(self, repository: str, reference: str, accept: str = MANIFEST_MEDIA_TYPE) -> bytes:
        """The manifest's bytes, checked against the registry's digest header and a digest reference."""
        response = self._request("GET", self._manifest_url(repository, reference), repository,
                                 headers={"Accept": accept}, stream=True)
        try:
            if response.status_code == 404:
                raise self._not_found(response, repository, reference)
            if response.status_code != 200:
                raise self._fail(response, f"cannot get {repository}:{reference}")
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{repository}:{reference}: the manifest is larger than "
                                        f"{MAX_MANIFEST_BYTES} bytes; refused")
            header = response.headers.get("Docker-Content-Digest")
        finally:
            response.close()
        manifest = bytes(body)
        actual = sha256_digest(manifest)
        for expected, source in ((header, "the registry's Docker-Content-Digest"),
                                 (reference if _DIGEST.fullmatch(reference) else None, "the requested digest")):
            if expected is not None and expected != actual:
                raise RegistryError(f"{repository}:{reference}: manifest digest {actual} does not match {source} "
                                    f"{expected}: corrupted")
        return manifest

    def _not_found(self, response: httpx.Response, repository: str, reference: str) -> RegistryError:
        error = self._fail(response, f"{repository}:{reference}: no such tag/digest in {self.registry}")
        return error

    def _put_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str) -> str:
        return self._put_manifest_response(repository, reference, manifest, media_type)[0]

    def _put_manifest_response(self, repository: str, reference: str, manifest: bytes,
                               media_type: str) -> tuple[str, httpx.Headers]:
        """Put a manifest; returns its digest and the response's headers (OCI-Subject tells of referrers support)."""
        response = self._request("PUT", self._manifest_url(repository, reference), repository,
                                 headers={"Content-Type": media_type}, content=manifest)
        if response.status_code not in (200, 201):
            raise self._fail(response, f"cannot put the manifest of {repository}:{reference}")
        digest = sha256_digest(manifest)
        stored = response.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest:
            raise RegistryError(f"{repository}:{reference}: the registry stored the manifest as {stored}, "
                                f"not {digest} (it changed the bytes)")
        return digest, response.headers

    def resolve(self, repository: str, reference: str) -> str:
        """The manifest digest a tag (or digest) names now, from a HEAD (no body is transferred)."""
        response = self._request("HEAD", self._manifest_url(repository, reference), repository,
                                 headers={"Accept": MANIFEST_MEDIA_TYPE})
        if response.status_code == 404:
            raise self._not_found(response, repository, reference)
        if response.status_code != 200:
            raise self._fail(response, f"cannot resolve {repository}:{reference}")
        digest: str | None = response.headers.get("Docker-Content-Digest")
        if digest is None:  # optional in the spec: hash the manifest itself
            return sha256_digest(self._get_manifest(repository, reference))
        if not _DIGEST.fullmatch(digest):
            raise RegistryError(f"{repository}:{reference}: the registry answered digest {digest!r}, "
                                "not a sha256 digest")
        return digest

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """The manifest digest `tag` names now, or None when the repository has no such tag."""
        try:
            return self.resolve(repository, tag)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise

    def tag(self, repository: str, digest: str, tag: str) -> None:
        """Put the manifest `digest` names under `tag` too (an alias such as stable or canary)."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        manifest = self._get_manifest(repository, digest)
        try:
            media_type = json.loads(manifest).get("mediaType") or MANIFEST_MEDIA_TYPE
        except (ValueError, AttributeError):
            media_type = MANIFEST_MEDIA_TYPE
        self._put_manifest(repository, tag, manifest, media_type)

    def delete(self, repository: str, reference: str) -> None:
        """Delete the manifest (a tag is resolved first); every tag naming that digest goes with it."""
        digest = reference if _DIGEST.fullmatch(reference) else self.resolve(repository, reference)
        response = self._request("DELETE", self._manifest_url(repository, digest), repository)
        if response.status_code == 404:
            raise self._not_found(response, repository, digest)
        if response.status_code == 405:
            raise self._fail(response, f"registry {self.registry} does not allow deleting {repository}@{digest} "
                                       "(Docker Distribution: storage.delete.enabled)")
        if response.status_code not in (200, 202):
            raise self._fail(response, f"cannot delete {repository}@{digest}")

    def tags(self, repository: str, page_size: int | None = None, referrers: bool = False) -> list[str]:
        """Every tag of the repository, following the Link header from page to page.

        The referrers tag schema's `sha256-<hex>` tags name signature indexes, not versions or aliases;
        they are left out unless `referrers`."""
        url: str | None = f"/v2/{repository}/tags/list"
        params = {"n": str(page_size)} if page_size else None
        out: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            if url is None:
                return out if referrers else [tag for tag in out if not _REFERRERS_TAG.fullmatch(tag)]
            response = self._request("GET", url, repository, params=params)
            if response.status_code == 404:
                raise self._fail(response, f"no such repository {repository} in {self.registry}")
            if response.status_code != 200:
                raise self._fail(response, f"cannot list the tags of {repository}")
            next_url: str | None = response.links.get("next", {}).get("url")
            try:
                out += [str(t) for t in response.json().get("tags") or []]
            except (ValueError, AttributeError) as exc:
                raise RegistryError(f"{repository}: the tag list is not JSON: {exc}") from None
            url, params = next_url, None
        raise RegistryError(f"{repository}: the tag list did not end after {MAX_TAG_PAGES} pages")

    # -- blobs ----------------------------------------------------------------------------------

    def _blob_exists(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"cannot check blob {digest} in {repository}")

    def _upload(self, repository: str, digest: str, data: bytes, report: Callable[[int], None]) -> None:
        """One blob: monolithic PUT when it fits a chunk, else PATCH chunks then a closing PUT."""
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository)
        if response.status_code != 202 or "Location" not in response.headers:
            raise self._fail(response, f"cannot start the upload of blob {digest} to {repository}")
        location = response.headers["Location"]
        body = data
        if len(data) > self.chunk_size:
            for start in range(0, len(data), self.chunk_size):
                chunk = data[start:start + self.chunk_size]
                response = self._request("PATCH", location, repository, content=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(chunk) - 1}"})
                if response.status_code != 202 or "Location" not in response.headers:
                    raise self._fail(response, f"cannot upload blob {digest} to {repository} "
                                               f"(chunk at byte {start})")
                location = response.headers["Location"]
                report(len(chunk))
            body = b""
        url = httpx.URL(location)
        response = self._request("PUT", str(url.copy_merge_params({"digest": digest})), repository, content=body,
                                 headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 201:
            raise self._fail(response, f"cannot complete the upload of blob {digest} to {repository}")
        if body:
            report(len(body))

    def _get_blob(self, repository: str, descriptor: dict[str, Any], report: Callable[[int], None]) -> bytes:
        """A blob, streamed, refused as corrupted when its bytes do not match the descriptor."""
        digest, size = str(descriptor.get("digest")), descriptor.get("size")
        if not _DIGEST.fullmatch(digest) or not isinstance(size, int) or size < 0:
            raise RegistryError(f"{repository}: the manifest has a bad descriptor {descriptor!r}")
        response = self._request("GET", f"/v2/{repository}/blobs/{digest}", repository, stream=True)
        try:
            if response.status_code != 200:
                raise self._fail(response, f"cannot get blob {digest} of {repository}")
            hasher, data = hashlib.sha256(), bytearray()
            for piece in response.iter_bytes():
                hasher.update(piece)
                data += piece
                if len(data) > size:
                    break
                report(len(piece))
        finally:
            response.close()
        if len(data) != size or "sha256:" + hasher.hexdigest() != digest:
            raise RegistryError(f"{repository}: blob {digest} from {self.registry} does not match its digest or "
                                f"size ({len(data)} bytes, {size} expected): corrupted")
        return bytes(data)

    # -- artifacts ----------------------------------------------------------------------------

    def push(self, repository: str, tag: str, artifact: ModelArtifact, progress: Progress | None = None) -> str:
        """Upload the blobs the registry lacks, then the manifest under `tag`; returns the manifest digest.

        `progress(done, total)` counts bytes of the blobs actually uploaded (total 0 when the
        registry already had them all).
        """
        return self.push_manifest(repository, tag, artifact.manifest(), artifact.blobs(), progress)

    def push_manifest(self, repository: str, tag: str, manifest: bytes, blobs: dict[str, bytes],
                      progress: Progress | None = None, media_type: str = MANIFEST_MEDIA_TYPE) -> str:
        """`push` for any manifest (e.g. a container image, deploy/image.py): its blobs by digest, then
        the manifest's exact bytes under `tag`; returns the manifest digest."""
        missing = {d: b for d, b in blobs.items() if not self._blob_exists(repository, d)}
        total = sum(len(b) for b in missing.values())
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        for digest, data in missing.items():
            self._upload(repository, digest, data, report)
        return self._put_manifest(repository, tag, manifest, media_type)

    def pull(self, repository: str, reference: str, progress: Progress | None = None) -> ModelArtifact:
        """The artifact a tag or digest names, every digest verified; nothing is returned on a mismatch."""
        manifest = self._get_manifest(repository, reference)
        try:
            document = json.loads(manifest)
            config, layers = document["config"], document["layers"]
            wanted = [config, *(layer for layer in layers if layer.get("mediaType") in _MODEL_LAYER_TYPES)]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"{repository}:{reference}: not a wasinfer model manifest: {exc}") from None
        if config.get("mediaType") != CONFIG_MEDIA_TYPE:
            raise RegistryError(f"{repository}:{reference}: not a wasinfer model (config media type "
                                f"{config.get('mediaType')!r}, expected {CONFIG_MEDIA_TYPE})")
        total = sum(d.get("size", 0) for d in wanted if isinstance(d.get("size"), int))
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        blobs = {str(d.get("digest")): self._get_blob(repository, d, report) for d in wanted}
        try:
            return ModelArtifact.from_manifest(manifest, blobs)
        except ValueError as exc:
            raise RegistryError(f"{repository}:{reference}: {exc}") from exc

    # -- referrers (OCI 1.1) ------------------------------------------------------------------

    @staticmethod
    def referrers_tag(digest: str) -> str:
        """The tag schema's tag for a subject: `sha256:<hex>` → `sha256-<hex>`."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        return digest.replace(":", "-")

    def push_referrer(self, repository: str, subject_digest: str, artifact_type: str, blob: bytes,
                      annotations: dict[str, str] | None = None) -> str:
        """Attach `blob` (of media type `artifact_type`) to the manifest `subject_digest` names; returns the
        referrer manifest's digest.

        The referrer is an image manifest with `artifactType`, the empty config, `blob` as its one layer
        and `subject` pointing at the model. It is put by digest (no tag of its own). A registry with the
        referrers API says so with an `OCI-Subject` header; without it, the referrer is also listed in the
        index under the tag schema's tag, which is read, extended and put back. Two pushers racing on that
        index can lose one entry (the spec's known limit of the fallback); pushing the signature again
        restores it, as entries are keyed by digest.
        """
        subject_manifest = self._get_manifest(repository, subject_digest)
        try:
            subject_type = json.loads(subject_manifest).get("mediaType") or MANIFEST_MEDIA_TYPE
        except (ValueError, AttributeError):
            subject_type = MANIFEST_MEDIA_TYPE
        empty_digest, blob_digest = sha256_digest(EMPTY_BLOB), sha256_digest(blob)
        empty = {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty_digest, "size": len(EMPTY_BLOB)}
        layer = {"mediaType": artifact_type, "digest": blob_digest, "size": len(blob)}
        document: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": artifact_type,
            "config": empty, "layers": [layer],
            "subject": {"mediaType": subject_type, "digest": subject_digest, "size": len(subject_manifest)},
        }
        if annotations:
            document["annotations"] = dict(annotations)
        manifest = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        digest = sha256_digest(manifest)
        for needed, data in ((empty_digest, EMPTY_BLOB), (blob_digest, blob)):
            if not self._blob_exists(repository, needed):
                self._upload(repository, needed, data, lambda n: None)
        _, headers = self._put_manifest_response(repository, digest, manifest, MANIFEST_MEDIA_TYPE)
        if headers.get("OCI-Subject") == subject_digest:
            return digest  # the registry indexes referrers itself
        descriptor = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": len(manifest),
                      "artifactType": artifact_type, **({"annotations": dict(annotations)} if annotations else {})}
        tag = self.referrers_tag(subject_digest)
        entries = [d for d in self._fallback_index(repository, subject_digest) if d.get("digest") != digest]
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [*entries, descriptor]}
        self._put_manifest(repository, tag, json.dumps(index, separators=(",", ":")).encode(), INDEX_MEDIA_TYPE)
        return digest

    def _fallback_index(self, repository: str, subject_digest: str) -> list[dict[str, Any]]:
        """The descriptors the tag schema's index lists for `subject_digest` ([] when there is no such tag)."""
        try:
            raw = self._get_manifest(repository, self.referrers_tag(subject_digest), INDEX_MEDIA_TYPE)
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        return self._index_entries(raw, f"{repository}:{self.referrers_tag(subject_digest)}")

    @staticmethod
    def _index_entries(raw: bytes, where: str) -> list[dict[str, Any]]:
        try:
            manifests = json.loads(raw).get("manifests") or []
        except (ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: the referrers index is not JSON: {exc}") from None
        if not isinstance(manifests, list):
            raise RegistryError(f"{where}: the referrers index has no list of manifests")
        return [d for d in manifests if isinstance(d, dict)]

    def referrers(self, repository: str, subject_digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """The descriptors of the manifests that refer to `subject_digest` (of `artifact_type`, when given):
        from the referrers API, else (404) from the tag schema's index."""
        if not _DIGEST.fullmatch(subject_digest):
            raise ValueError(f"{subject_digest!r} is not a sha256 digest")
        params = {"artifactType": artifact_type} if artifact_type else None
        response = self._request("GET", f"/v2/{repository}/referrers/{subject_digest}", repository,
                                 headers={"Accept": INDEX_MEDIA_TYPE}, params=params)
        if response.status_code == 200:
            entries = self._index_entries(response.content, f"{repository} referrers of {subject_digest}")
        elif response.status_code == 404:
            entries = self._fallback_index(repository, subject_digest)
        else:
            raise self._fail(response, f"cannot list the referrers of {repository}@{subject_digest}")
        # a registry may ignore the filter (it says so with OCI-Filters-Applied): filter here either way
        return [d for d in entries if artifact_type is None or d.get("artifactType") == artifact_type]

    def referrer_blobs(self, repository: str, descriptor: dict[str, Any], artifact_type: str) -> list[bytes]:
        """The layers of type `artifact_type` of the referrer `descriptor` names, each verified against its digest.

        The referrer's manifest must name the subject it was listed for only by the listing; what it holds
        is judged by the caller (a signature verifies or not), so a stray entry cannot do more than fail.
        """
        digest = str(descriptor.get("digest"))
        if not _DIGEST.fullmatch(digest):
            raise RegistryError(f"{repository}: a referrer with a bad descriptor {descriptor!r}")
        raw = self._get_manifest(repository, digest)
        try:
            layers = json.loads(raw).get("layers") or []
        except (ValueError, AttributeError) as exc:
            raise RegistryError(f"{repository}@{digest}: the referrer's manifest is not JSON: {exc}") from None
        return [self._get_blob(repository, layer, lambda n: None) for layer in layers
                if isinstance(layer, dict) and layer.get("mediaType") == artifact_type]
