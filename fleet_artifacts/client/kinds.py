"""Guessing an artifact's kind from its file name (when the caller gives none)."""

from __future__ import annotations

from pathlib import PurePath

from fleet_artifacts.core.models import ArtifactKind

_BY_SUFFIX: dict[ArtifactKind, frozenset[str]] = {
    ArtifactKind.LOG: frozenset({".log", ".out", ".err", ".trace"}),
    ArtifactKind.COVERAGE: frozenset({".lcov", ".gcov", ".gcda", ".profdata", ".coverage", ".exec"}),
    ArtifactKind.IMAGE: frozenset(
        {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp", ".ico", ".avif"}
    ),
    ArtifactKind.BUILD: frozenset(
        {
            ".tar",
            ".gz",
            ".tgz",
            ".bz2",
            ".xz",
            ".zst",
            ".zip",
            ".7z",
            ".whl",
            ".jar",
            ".war",
            ".deb",
            ".rpm",
            ".apk",
            ".aab",
            ".ipa",
            ".dmg",
            ".msi",
            ".exe",
            ".dll",
            ".so",
            ".dylib",
            ".a",
            ".o",
            ".bin",
            ".img",
            ".iso",
            ".nupkg",
            ".gem",
            ".crate",
            ".wasm",
        }
    ),
    ArtifactKind.CODE: frozenset(
        {
            ".py",
            ".js",
            ".mjs",
            ".ts",
            ".tsx",
            ".jsx",
            ".go",
            ".rs",
            ".c",
            ".h",
            ".cc",
            ".cpp",
            ".hpp",
            ".java",
            ".kt",
            ".rb",
            ".php",
            ".cs",
            ".swift",
            ".sh",
            ".ps1",
            ".sql",
            ".patch",
            ".diff",
        }
    ),
    ArtifactKind.DOCUMENT: frozenset(
        {".md", ".rst", ".txt", ".pdf", ".html", ".htm", ".doc", ".docx", ".odt", ".rtf"}
    ),
    ArtifactKind.DATA: frozenset(
        {
            ".json",
            ".jsonl",
            ".ndjson",
            ".csv",
            ".tsv",
            ".xml",
            ".yaml",
            ".yml",
            ".toml",
            ".parquet",
            ".avro",
            ".sqlite",
            ".db",
            ".npy",
            ".npz",
            ".pb",
            ".cbor",
            ".har",
        }
    ),
}


def guess_kind(file_name: str) -> ArtifactKind:
    """The kind a file's name suggests: coverage and screenshots by name, the rest by extension.

    >>> guess_kind("build.log"), guess_kind("coverage.xml"), guess_kind("login-screenshot.png")
    (<ArtifactKind.LOG: 'log'>, <ArtifactKind.COVERAGE: 'coverage'>, <ArtifactKind.SCREENSHOT: 'screenshot'>)
    """
    path = PurePath(file_name.lower())
    suffixes = path.suffixes
    suffix = suffixes[-1] if suffixes else ""
    stem = path.name
    # Names say more than extensions for these two: coverage.xml is coverage, not data.
    if (
        "coverage" in stem
        or "cobertura" in stem
        or "jacoco" in stem
        or suffix in _BY_SUFFIX[ArtifactKind.COVERAGE]
    ):
        return ArtifactKind.COVERAGE
    if suffix in _BY_SUFFIX[ArtifactKind.IMAGE] and ("screenshot" in stem or "screen-shot" in stem):
        return ArtifactKind.SCREENSHOT
    if stem.endswith(".log.gz") or stem.endswith(".log.zst"):
        return ArtifactKind.LOG  # a compressed log is still a log
    for kind, known in _BY_SUFFIX.items():
        if suffix in known:
            return kind
    return ArtifactKind.OTHER
