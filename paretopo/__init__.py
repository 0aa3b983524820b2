"""ParetoPO reference implementation."""

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    """Versions of paretopo and the libraries a run depends on (recorded in run logs and exports).

    Read from the installed distributions, so recording them imports none of the libraries."""
    import platform
    from importlib.metadata import version

    return {"paretopo": __version__, **{name: version(name) for name in ("torch", "transformers", "trl", "peft")},
            "python": platform.python_version()}
