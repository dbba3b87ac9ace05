"""The import-linter contracts in pyproject.toml cover the whole package, so a new module cannot slip past them."""

from __future__ import annotations

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "elixirml"


def top_level() -> set[str]:
    names = {f"elixirml.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {f"elixirml.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    return names


def contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_every_package_has_its_private_modules_contract_listing_every_other_module():
    modules = top_level()
    packages = {m for m in modules if (PACKAGE / m.split(".", 1)[1]).is_dir()}
    private = {}
    for contract in contracts():
        match = re.match(r"Only (\w+)/ imports", contract["name"])
        if match:
            private[f"elixirml.{match.group(1)}"] = contract
    assert sorted(packages - set(private)) == []  # each package: only it imports its _private modules
    for package, contract in private.items():
        assert contract["forbidden_modules"] == [f"{package}.*"]
        missing = modules - {package} - set(contract["source_modules"])
        assert sorted(missing) == [], f"{contract['name']}: add {sorted(missing)} to source_modules"
