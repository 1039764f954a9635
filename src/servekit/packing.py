"""`pack`: turn a model file into a bundle, inferring what the model reveals and asking,
through a clear error naming the option, for what it does not."""

from __future__ import annotations

import logging
import platform
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit import __version__
from servekit.bundle import Bundle, Manifest, file_digests, sha256_file
from servekit.errors import Conflict, InvalidInput, MissingInformation
from servekit.formats import detect_format
from servekit.profile import build_profile, read_table
from servekit.runtimes import ModelDescription, Runtime, get_runtime
from servekit.signature import Feature, Signature
from servekit.staging import staged_folder
from servekit.trust import authorize

if TYPE_CHECKING:
    import pandas as pd

    from servekit.optimize import OptimizeReport

__all__ = ["PackedBundle", "bundle_for_file", "inspect_file", "pack"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
logger = logging.getLogger("servekit.packing")


class PackedBundle(Bundle):
    """The bundle `pack` wrote, with the outcome of its automatic ONNX optimization."""

    def __init__(self, path: Path, manifest: Manifest, optimization: OptimizeReport | None = None) -> None:
        super().__init__(path, manifest)
        self.optimization = optimization
        """`None` when not attempted (`optimize=False`, or no sample to verify on)."""


def inspect_file(
    path: Path,
    *,
    trust: bool = False,
    runtime_options: dict[str, Any] | None = None,
    task: str | None = None,
    classes: list[Any] | None = None,
    signature: Signature | None = None,
) -> tuple[Runtime, ModelDescription]:
    """Detect the format of a model file, load it (subject to the trust policy) and describe it."""
    path = Path(path)
    runtime = get_runtime(detect_format(path))(path, runtime_options)
    authorize(runtime, trust=trust)
    runtime.configure(signature, classes, task)  # type: ignore[arg-type]
    runtime.load()
    return runtime, runtime.describe()


def pack(
    model: Path | str,
    *,
    name: str | None = None,
    version: int | None = None,
    output: Path | str | None = None,
    sample: Path | str | pd.DataFrame | np.ndarray | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    trust: bool = False,
    features: list[str] | None = None,
    n_features: int | None = None,
    task: str | None = None,
    classes: list[Any] | None = None,
    runtime_options: dict[str, Any] | None = None,
    training_date: str | None = None,
    description: str | None = None,
    allow_nan: bool | None = None,
    force: bool = False,
    optimize: bool = True,
) -> PackedBundle:
    """Write a bundle folder (artifact + servekit.yaml) for `model` and return it.

    The folder appears whole or not at all: it is built under a temporary name and renamed.
    With `optimize` and a `sample`, an ONNX variant verified on the sample is added when the
    model converts (see `servekit.optimize`); a failure is reported in `.optimization`, never raised.
    """
    model = Path(model)
    if sample is not None:
        sample = _sample_frame(sample)  # read once: for the profile and for the optimization
    manifest, _ = _build_manifest(
        model,
        name=name,
        version=version,
        sample=sample,
        metrics=metrics,
        tags=tags,
        trust=trust,
        features=features,
        n_features=n_features,
        task=task,
        classes=classes,
        runtime_options=runtime_options,
        training_date=training_date,
        description=description,
        allow_nan=allow_nan,
    )
    target = Path(output) if output is not None else Path.cwd() / f"{manifest.name}.bundle"
    if target.exists() and not force:
        raise Conflict(f"{target} already exists", hint="Choose another --output or pass --force to replace it")
    with staged_folder(target) as staging:
        shutil.copy2(model, staging / manifest.artifact)
        manifest.files = file_digests(staging)
        staged = Bundle(staging, manifest)
        staged.write_manifest()
        report = _optimize(staged, sample, trust) if optimize and sample is not None else None
    return PackedBundle(target, staged.manifest, report)


def _optimize(bundle: Bundle, sample: pd.DataFrame, trust: bool) -> OptimizeReport:
    """Add a verified ONNX variant to a staged bundle; any failure becomes the report's reason."""
    from servekit.errors import ServekitError
    from servekit.optimize import OptimizeReport, optimize_bundle

    try:
        return optimize_bundle(bundle, sample=sample, trust=trust)
    except ServekitError as exc:
        reason = exc.detail
    except Exception as exc:  # optional: a surprise here must not cost the user the bundle
        logger.exception("optimizing %s failed", bundle.manifest.name)
        reason = f"{type(exc).__name__}: {exc}"
    logger.info("%s: not optimized: %s", bundle.manifest.name, reason)
    return OptimizeReport(False, reason=reason)


def bundle_for_file(model: Path | str, *, trust: bool = False, **options: Any) -> tuple[Bundle, Runtime]:
    """An in-memory bundle for a bare model file (nothing written), with its loaded runtime."""
    model = Path(model)
    manifest, runtime = _build_manifest(model, trust=trust, **options)
    manifest.files = {model.name: sha256_file(model)}
    bundle = Bundle(model.parent, manifest)
    runtime.configure(bundle.signature, manifest.classes, manifest.task)
    return bundle, runtime


def _build_manifest(
    model: Path,
    *,
    name: str | None = None,
    version: int | None = None,
    sample: Path | str | pd.DataFrame | np.ndarray | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    trust: bool = False,
    features: list[str] | None = None,
    n_features: int | None = None,
    task: str | None = None,
    classes: list[Any] | None = None,
    runtime_options: dict[str, Any] | None = None,
    training_date: str | None = None,
    description: str | None = None,
    allow_nan: bool | None = None,
) -> tuple[Manifest, Runtime]:
    from servekit.refs import validate_name

    if not model.is_file():
        raise InvalidInput(f"{model} is not a file")
    if task is not None and task not in ("classification", "regression"):
        raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
    given = Signature.positional(n_features) if n_features else None
    if given is not None and features:
        given = Signature(tuple(Feature(f) for f in features))
    runtime, described = inspect_file(
        model, trust=trust, runtime_options=runtime_options, task=task, classes=classes, signature=given
    )
    signature = _signature(model, described, features=features, given=given)
    if allow_nan is not None:
        signature = _replace(signature, allow_nan=allow_nan)
    frame = _sample_frame(sample) if sample is not None else None
    if isinstance(frame, np.ndarray):  # unnamed rows in feature order
        import pandas as pd

        frame = pd.DataFrame(np.asarray(frame).reshape(len(frame), -1), columns=signature.names)
    if frame is not None:
        signature = _with_sample_names(signature, frame)
        frame = _sample_columns(frame, signature)
    final_task = task or described.task
    final_classes = classes if classes is not None else described.classes
    if final_task == "classification" and not final_classes:
        raise MissingInformation(f"cannot tell the classes of {model.name}", hint="Pass them with --classes a,b,c")
    manifest = Manifest(
        name=validate_name(name or name_from_path(model)),
        version=version,
        format=runtime.format,
        artifact=model.name,
        task=final_task,
        classes=final_classes if final_task == "classification" else None,
        signature=signature.to_dict(),
        framework=described.framework,
        framework_version=described.framework_version,
        python_version=platform.python_version(),
        servekit_version=__version__,
        training_date=training_date,
        description=description,
        metrics=dict(metrics or {}),
        tags=dict(tags or {}),
        runtime_options=dict(runtime_options or {}),
        profile=build_profile(frame, signature) if frame is not None else None,
    )
    return manifest, runtime


def _signature(
    model: Path, described: ModelDescription, *, features: list[str] | None, given: Signature | None
) -> Signature:
    signature = described.signature or given
    if signature is None:
        raise MissingInformation(
            f"cannot tell how many input features {model.name} takes",
            hint="Pass --n-features N (or --features a,b,c)",
        )
    if features:
        if len(features) != signature.n_features:
            raise InvalidInput(f"--features names {len(features)} features but the model takes {signature.n_features}")
        signature = _replace(
            signature, features=tuple(Feature(n, f.dtype) for n, f in zip(features, signature.features, strict=True))
        )
    return signature


def _replace(signature: Signature, **changes: Any) -> Signature:
    data = {
        "features": signature.features,
        "input_kind": signature.input_kind,
        "named": signature.named,
        "row_shape": signature.row_shape,
        "array_dtype": signature.array_dtype,
        "allow_nan": signature.allow_nan,
    }
    data.update(changes)
    return Signature(**data)


def _sample_frame(sample: Path | str | pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
    """The sample as a table (files are read once), or as given when it is a frame or an array."""
    frame = read_table(Path(sample)) if isinstance(sample, str | Path) else sample
    if len(frame) == 0:
        raise InvalidInput("the --sample table has no rows")
    return frame


def _with_sample_names(signature: Signature, frame: pd.DataFrame) -> Signature:
    """Adopt the sample's column names for a model that knows only its feature count."""
    columns = [str(c) for c in frame.columns]
    if signature.named or set(signature.names) <= set(columns):
        return signature
    if len(columns) != signature.n_features:
        raise InvalidInput(
            f"the --sample table has {len(columns)} columns but the model takes {signature.n_features} "
            "features and does not know their names",
            hint="Keep only the feature columns in the sample, in training order, or pass --features",
        )
    return _replace(
        signature, features=tuple(Feature(c, f.dtype) for c, f in zip(columns, signature.features, strict=True))
    )


def _sample_columns(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    frame = frame.rename(columns=str)
    missing = [n for n in signature.names if n not in frame.columns]
    if missing:
        raise InvalidInput(f"the --sample table lacks the feature column(s) {', '.join(missing)}")
    return frame[signature.names]


def name_from_path(model: Path) -> str:
    """A valid model name made from a file or folder name."""
    name = _NAME_CHARS.sub("-", model.stem).strip("-.") or "model"
    return name[:64]
