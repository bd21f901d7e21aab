"""Settings loading and input rules (pure functions, no servers)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet_artifacts.app import create_app
from fleet_artifacts.core.access import DEFAULT_SCOPES, Scope, digest_of, parse_entries
from fleet_artifacts.core.errors import Forbidden, InvalidInput, Unauthenticated
from fleet_artifacts.core.keys import blob_key, content_disposition
from fleet_artifacts.core.models import ArtifactKind
from fleet_artifacts.core.validation import (
    ID_PATTERN,
    TAG_PATTERN,
    check_content_type,
    check_file_name,
    check_id,
    check_tags,
    parse_tags,
)
from fleet_artifacts.routes.auth import TokenAuthority
from fleet_artifacts.settings import Settings, SettingsError, load_settings
from tests.servers import REPO

BASE = {
    "FLEET_ARTIFACTS_TOKENS": "tok-aaaaaaaaaaaaaaaa:acme, tok-bbbbbbbbbbbbbbbb:globex",
    "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
}


def test_defaults_and_overrides() -> None:
    s = load_settings(BASE)
    assert [(t.digest, t.product, t.scopes) for t in s.tokens] == [
        (digest_of("tok-aaaaaaaaaaaaaaaa"), "acme", DEFAULT_SCOPES),
        (digest_of("tok-bbbbbbbbbbbbbbbb"), "globex", DEFAULT_SCOPES),
    ]
    assert (s.sas_ttl_seconds, s.blob_container, s.blob_backend, s.pointer_backend) == (
        900,
        "fleet-artifacts",
        "azure",
        "sqlite",
    )
    s = load_settings(
        {
            **BASE,
            "FLEET_ARTIFACTS_SAS_TTL_SECONDS": "300",
            "FLEET_ARTIFACTS_LOG_LEVEL": "debug",
            "PATH": "/usr/bin",
            "FLEET_ARTIFACTS_TEST_COSMOS_ENDPOINT": "ignored",
        }
    )
    assert s.sas_ttl_seconds == 300 and s.log_level == "DEBUG"
    assert load_settings(BASE).ready_timeout_seconds == 2.0
    assert load_settings(BASE).durability == "power"  # every fsync kept unless asked otherwise
    assert load_settings({**BASE, "FLEET_ARTIFACTS_DURABILITY": " Process "}).durability == "process"
    assert (
        load_settings({**BASE, "FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "0.5"}).ready_timeout_seconds == 0.5
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FLEET_ARTIFACTS_BLOB_BACKEND": "local"}, "contradicts"),
        ({"FLEET_ARTIFACTS_SIGNING_KEY": "short"}, "at least 32"),
        ({"FLEET_ARTIFACTS_PUBLIC_BASE_URL": "ftp://x"}, "http"),
        ({"FLEET_ARTIFACTS_TOKENS": "short:acme"}, "at least 16"),
        ({"FLEET_ARTIFACTS_TOKENS": "tok-aaaaaaaaaaaaaaaa"}, "token:productId"),
        ({"FLEET_ARTIFACTS_TOKENS": "tok-aaaaaaaaaaaaaaaa:../x"}, "productId"),
        ({"FLEET_ARTIFACTS_SAS_TTL_SECONDS": "ten"}, "whole number"),
        ({"FLEET_ARTIFACTS_SAS_TTL_SECONDS": "10"}, "between"),
        ({"FLEET_ARTIFACTS_BLOB_BACKEND": "s3"}, "one of"),
        ({"FLEET_ARTIFACTS_DURABILITY": "fsync"}, "DURABILITY must be one of power, process"),
        ({"FLEET_ARTIFACTS_AZURE_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net"}, "exactly one"),
        (
            {"FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": "", "FLEET_ARTIFACTS_BLOB_BACKEND": "azure"},
            "exactly one",
        ),
        ({"FLEET_ARTIFACTS_POINTER_BACKEND": "cosmos"}, "COSMOS_ENDPOINT"),
        ({"FLEET_ARTIFACTS_COSMOS_INIT_ON_START": "maybe"}, "true or false"),
        ({"FLEET_ARTIFACTS_SAS_TTL": "60"}, "unknown setting"),
        (
            {"FLEET_ARTIFACTS_BLOCK_SIZE_BYTES": "65536", "FLEET_ARTIFACTS_MAX_UPLOAD_BYTES": str(2**40)},
            "50,000",
        ),
        ({"FLEET_ARTIFACTS_DEFAULT_RETENTION_DAYS": "0"}, "between"),
        ({"FLEET_ARTIFACTS_DEFAULT_RETENTION_DAYS": "400"}, "exceeds FLEET_ARTIFACTS_MAX_RETENTION_DAYS"),
        ({"FLEET_ARTIFACTS_SOFT_DELETE_DAYS": "-1"}, "between"),
        (
            {"FLEET_ARTIFACTS_COOL_AFTER_DAYS": "90", "FLEET_ARTIFACTS_ARCHIVE_AFTER_DAYS": "30"},
            "ARCHIVE_AFTER_DAYS",
        ),
        ({"FLEET_ARTIFACTS_COLD_AFTER_DAYS": "30", "FLEET_ARTIFACTS_COOL_AFTER_DAYS": "30"}, "colder tiers"),
        ({"FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "soon"}, "whole number"),
        ({"FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "soon"}, "must be a number"),
        ({"FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "0.05"}, "between 0.1 and 30"),
        ({"FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "31"}, "between 0.1 and 30"),
        ({"FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "nan"}, "between 0.1 and 30"),
        ({"FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS": "inf"}, "between 0.1 and 30"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({**BASE, **changes})


def test_env_example_lists_every_setting_and_loads() -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    env = dict(line.lstrip("# ").split("=", 1) for line in lines if line.lstrip("# ").startswith("FLEET_"))
    listed = {name.removeprefix("FLEET_ARTIFACTS_").lower() for name in env}
    assert listed == set(Settings.__struct_fields__)
    active = {k: v for k, v in env.items() if not any(line.startswith("# " + k) for line in lines)}
    s = load_settings(active)
    assert (s.blob_backend, s.pointer_backend) == ("local", "sqlite")


def test_the_client_commands_variables_are_not_settings_but_typos_still_are() -> None:
    s = load_settings({**BASE, "FLEET_ARTIFACTS_URL": "https://x.invalid", "FLEET_ARTIFACTS_TOKEN": "fa_x"})
    assert s == load_settings(BASE)
    with pytest.raises(SettingsError, match="FLEET_ARTIFACTS_TOKENZ"):
        load_settings({**BASE, "FLEET_ARTIFACTS_TOKENZ": "x"})


def test_no_azure_setting_means_the_embedded_default() -> None:
    s = load_settings({"FLEET_ARTIFACTS_PUBLIC_BASE_URL": "https://artifacts.example.com/"})
    assert (s.blob_backend, s.pointer_backend, s.tokens) == ("local", "sqlite", ())
    assert s.public_base_url == "https://artifacts.example.com"
    with pytest.raises(SettingsError, match="no bearer tokens"):
        create_app(s)  # only `serve` generates a token; a library caller must give one


def test_token_authority() -> None:
    auth = TokenAuthority(
        parse_entries(
            ["tok-aaaaaaaaaaaaaaaa:acme", f"sha256:{digest_of('tok-reader-0000000000')}:acme:read+share"],
            source="test",
        )
    )
    assert auth.identify("Bearer tok-aaaaaaaaaaaaaaaa").product == "acme"
    assert auth.identify("bearer  tok-aaaaaaaaaaaaaaaa ").product == "acme"
    reader = "Bearer tok-reader-0000000000"  # configured by its hash only
    assert auth.authorize(reader, Scope.READ).product == "acme"
    assert auth.authorize(reader, Scope.SHARE).token_id == "sha256:" + digest_of("tok-reader-0000000000")[:12]
    for scope in (Scope.WRITE, Scope.DELETE, Scope.ADMIN):
        with pytest.raises(Forbidden):
            auth.authorize(reader, scope)
    assert (
        auth.authorize("Bearer tok-aaaaaaaaaaaaaaaa", Scope.SHARE).product == "acme"
    )  # admin includes share
    for header in (
        None,
        "",
        "Bearer",
        "Bearer tok-aaaaaaaaaaaaaaab",
        "Basic dG9rOng=",
        "tok-aaaaaaaaaaaaaaaa",
    ):
        with pytest.raises(Unauthenticated):
            auth.identify(header)


@given(st.text(max_size=200))
def test_accepted_ids_can_never_escape_their_key_segment(value: str) -> None:
    try:
        check_id(value, "jobId")
    except InvalidInput:
        return
    assert "/" not in value and "\\" not in value and ".." not in value
    assert value.isprintable() and 0 < len(value) <= 128
    key = blob_key("acme", value, "0" * 32, ArtifactKind.LOG)
    assert key.split("/") == ["fleet", "acme", value, "0" * 32 + "-log"]


@given(st.text(max_size=300))
def test_accepted_file_names_are_plain_names(value: str) -> None:
    try:
        check_file_name(value)
    except InvalidInput:
        return
    assert "/" not in value and "\\" not in value and ".." not in value
    # No control, format, surrogate, private-use or unassigned code point (exotic spaces are fine:
    # they are percent-encoded in filename* and replaced in the ASCII fallback).
    assert all(unicodedata.category(ch)[0] != "C" for ch in value)
    disposition = content_disposition(value)
    assert disposition.isascii() and "\r" not in disposition and "\n" not in disposition
    fallback = disposition.split('filename="', 1)[1].split('"; filename*=', 1)[0]
    assert '"' not in fallback and "\\" not in fallback


def test_tag_rules() -> None:
    assert parse_tags(["os:linux", "url:https://x/y"]) == {"os": "linux", "url": "https://x/y"}
    with pytest.raises(InvalidInput, match="twice"):
        parse_tags(["os:a", "os:b"])
    with pytest.raises(InvalidInput, match="at most 10"):
        check_tags({f"k{i}": "v" for i in range(11)})
    with pytest.raises(InvalidInput):
        check_tags({"k": "v" * 257})
    with pytest.raises(InvalidInput):
        check_tags({"bad key": "v"})
    with pytest.raises(InvalidInput):
        check_tags({"k": "line\nbreak"})


def test_content_type_rules() -> None:
    assert check_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert check_content_type('multipart/mixed; boundary="a b"') == 'multipart/mixed; boundary="a b"'
    for bad in ("text", "text/", "/plain", "text/plain\r\nX-Evil: 1", "a/b; c"):
        with pytest.raises(InvalidInput):
            check_content_type(bad)


@given(st.text(alphabet="ab9._-:+= /\\é", max_size=12))
def test_the_documented_patterns_agree_with_the_checks(text: str) -> None:
    try:
        check_id(text, "jobId")
        accepted = True
    except InvalidInput:
        accepted = False
    assert bool(re.fullmatch(ID_PATTERN, text)) == accepted
    if re.fullmatch(TAG_PATTERN, text):  # the tag pattern is a subset of what is accepted
        assert parse_tags([text])
