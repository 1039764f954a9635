"""skops files: a safe, inspectable alternative to pickle for scikit-learn models.

Loading never executes arbitrary code: every type in the file must be on an allow-list — skops'
own defaults, the types of scikit-learn, NumPy and SciPy, and any listed in the manifest's
`runtime_options.trusted_types`. Anything else is refused unless the operator trusts the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import ClassVar

from servekit.errors import CorruptArtifact, UntrustedArtifact
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes._estimator import check_estimator, describe_estimator, predict_estimator
from servekit.runtimes.base import ModelDescription, Runtime, import_optional
from servekit.signature import Batch

_TRUSTED_PACKAGES = ("sklearn.", "numpy.", "scipy.")


@register_runtime
class SkopsRuntime(Runtime):
    format: ClassVar[str] = "skops"
    extensions: ClassVar[tuple[str, ...]] = (".skops",)
    description: ClassVar[str] = "skops file of a scikit-learn model (loaded with a type allow-list)"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return members is not None and "schema.json" in members

    def load(self) -> None:
        sio = import_optional("skops.io", None)
        try:
            untrusted = sio.get_untrusted_types(file=self.path)
        except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, ValueError, TypeError, OSError) as exc:
            raise CorruptArtifact(f"{self.path.name} is not a readable skops file ({exc})") from None
        allowed = set(self.options.get("trusted_types", []))
        refused = [t for t in untrusted if not t.startswith(_TRUSTED_PACKAGES) and t not in allowed]
        if refused and not self.trusted:
            raise UntrustedArtifact(
                f"{self.path.name} contains types outside the allow-list: {', '.join(sorted(refused))}",
                hint="If you trust them, list them under runtime_options.trusted_types in servekit.yaml "
                "or pass --trust",
            )
        try:
            model = sio.load(self.path, trusted=list(untrusted))
        except (
            zipfile.BadZipFile,
            json.JSONDecodeError,
            KeyError,
            ValueError,
            TypeError,
            AttributeError,
            OSError,
        ) as exc:
            raise CorruptArtifact(
                f"{self.path.name} cannot be loaded by skops ({type(exc).__name__}: {exc})",
                hint="Save the model again with skops.io.dump",
            ) from None
        self.model = check_estimator(model, self.path.name)

    def predict(self, batch: Batch) -> Prediction:
        return predict_estimator(self.model, batch, self.classes)

    def describe(self) -> ModelDescription:
        return describe_estimator(self.model)

    def unload(self) -> None:
        self.model = None
