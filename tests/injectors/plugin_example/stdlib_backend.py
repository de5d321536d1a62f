"""A minimal PEP 517 build backend (wheel only) using nothing but the standard library.

It exists so that the plugin test can install this package with ``--no-build-isolation``
in a virtualenv without the ``wheel`` package and without network access. It reads
``[project]`` (name, version, description, entry points) and the module list from
``[tool.stdlib-backend]`` in pyproject.toml.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _project() -> tuple[dict[str, Any], list[str]]:
    data = tomllib.loads((HERE / "pyproject.toml").read_text())
    return data["project"], data["tool"]["stdlib-backend"]["modules"]


def _dist(project: dict[str, Any]) -> str:
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    return f"{name}-{project['version']}"


def _metadata_files(project: dict[str, Any]) -> dict[str, str]:
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {project['name']}\n"
        f"Version: {project['version']}\n"
        f"Summary: {project.get('description', '')}\n"
        f"Requires-Python: {project.get('requires-python', '>=3')}\n"
    )
    wheel = "Wheel-Version: 1.0\nGenerator: stdlib_backend\nRoot-Is-Purelib: true\n"
    wheel += "Tag: py3-none-any\n"
    entry_points = ""
    for group, entries in project.get("entry-points", {}).items():
        entry_points += f"[{group}]\n"
        entry_points += "".join(f"{name} = {target}\n" for name, target in entries.items())
    return {"METADATA": metadata, "WHEEL": wheel, "entry_points.txt": entry_points}


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Any = None) -> str:
    project, _ = _project()
    info = f"{_dist(project)}.dist-info"
    folder = Path(metadata_directory) / info
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _metadata_files(project).items():
        (folder / name).write_text(text)
    return info


def build_wheel(
    wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None
) -> str:
    project, modules = _project()
    dist = _dist(project)
    filename = f"{dist}-py3-none-any.whl"
    files = {f"{m}.py": (HERE / f"{m}.py").read_bytes() for m in modules}
    files.update({f"{dist}.dist-info/{n}": t.encode() for n, t in _metadata_files(project).items()})
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as whl:
        for path, data in files.items():
            whl.writestr(path, data)
    return filename
