"""``l2l_torch.tasks`` and ``l2l_torch.configs`` when l2l_torch is imported from a source checkout.

The repository keeps ``tasks/`` and ``configs/`` at its top level, and ``pyproject.toml`` installs them
inside the package (``package-dir``), so an installed l2l_torch has ``l2l_torch/tasks/`` and
``l2l_torch/configs/``. A script run from the checkout (``python train.py``) imports the checkout's
``l2l_torch/`` instead, which has neither folder; this finder maps exactly those two names to the
top-level folders beside it. It does nothing in an installed copy.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: subpackage name -> folder at the top of the repository
FOLDERS = {"l2l_torch.tasks": "tasks", "l2l_torch.configs": "configs"}


class _CheckoutFolders(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        folder = FOLDERS.get(fullname)
        if folder is None:
            return None
        init = self.root / folder / "__init__.py"
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(init.parent)])


def install_checkout_finder() -> None:
    """Map ``l2l_torch.tasks``/``l2l_torch.configs`` to the checkout's top-level folders, where needed."""
    root = PACKAGE_DIR.parent
    if (PACKAGE_DIR / "tasks").is_dir() or not (root / "tasks" / "__init__.py").is_file():
        return  # an installed copy, or no checkout beside this package
    if not any(isinstance(f, _CheckoutFolders) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFolders(root))


install_checkout_finder()
