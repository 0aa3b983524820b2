"""ParetoPO reference implementation."""

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    """Versions of paretopo and the libraries a run depends on (recorded in run logs and exports)."""
    import platform

    import peft
    import torch
    import transformers
    import trl

    return {"paretopo": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "python": platform.python_version()}
