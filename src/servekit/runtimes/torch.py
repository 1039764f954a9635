"""PyTorch models: TorchScript archives, `torch.export` programs and `torch.save` files.

All three are zip archives under one root folder, told apart by their members:

    TorchScript (torch.jit.save)   <root>/code/...  <root>/constants.pkl  <root>/data.pkl
    torch.export (torch.export.save)  <root>/archive_format  <root>/models/<name>.json
    torch.save                     <root>/data.pkl  <root>/version   (no code/, no constants.pkl)

A `torch.save` file holds either a `state_dict` (weights only: loaded with
`weights_only=True`, the module is rebuilt from the `module` runtime option) or a whole pickled
`nn.Module`, which runs code when loaded and so needs trust.

A torch module cannot tell its task or input width: those come from the manifest (`configure`).
Classifiers return logits by default (runtime option `output: logits`); the runtime turns them
into probabilities with softmax, or sigmoid for a single output column.
"""

from __future__ import annotations

import importlib
import math
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from servekit.errors import (
    ArtifactError,
    CorruptArtifact,
    InvalidManifest,
    MissingDependency,
    MissingInformation,
    PredictionFailed,
)
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes.base import ModelDescription, Runtime, Task, import_optional
from servekit.signature import Batch, Signature

__all__ = ["TorchExportRuntime", "TorchRuntime", "TorchScriptRuntime", "tensor_prediction"]

_MODULE_HINT = (
    "Pass the class that defines the network to servekit pack: "
    "--module package.module:ClassName (and --module-kwargs '{...}' for its constructor arguments)"
)
_SHOWN_KEYS = 5


def tensor_prediction(scores: np.ndarray, task: Task | None, classes: list[Any] | None) -> Prediction:
    """A `Prediction` from a model's output array (shared by the tensor runtimes).

    For classification `scores` are probabilities, shape `(n, k)`; a single column is the
    probability of the positive class and becomes `[1 - p, p]`. Regression outputs are
    squeezed to `(n,)` when the model has one output.
    """
    scores = scores.reshape(scores.shape[0], -1)
    if task != "classification":
        values = scores.astype("float64")
        return Prediction(values[:, 0] if values.shape[1] == 1 else values)
    if scores.shape[1] == 1:
        scores = np.concatenate([1 - scores, scores], axis=1)
    if classes is None:
        classes = list(range(scores.shape[1]))
    if len(classes) != scores.shape[1]:
        raise InvalidManifest(
            f"the manifest lists {len(classes)} classes but the model outputs {scores.shape[1]} scores per row",
            hint="Pack the model again with the right --classes",
        )
    labels = np.asarray(classes)[scores.argmax(axis=1)]
    return Prediction(labels, scores.astype("float64"), classes)


def _roots_with(members: frozenset[str] | None, name: str) -> set[str]:
    """Root folders of a torch zip that hold the member `<root>/<name>`."""
    if not members:
        return set()
    return {m.split("/", 1)[0] for m in members if m.count("/") == 1 and m.endswith("/" + name)}


def _has_folder(members: frozenset[str], root: str, folder: str) -> bool:
    prefix = f"{root}/{folder}/"
    return any(m.startswith(prefix) for m in members)


def _is_torchscript(members: frozenset[str] | None) -> bool:
    roots = _roots_with(members, "constants.pkl")
    return any(_has_folder(members, root, "code") for root in roots)  # type: ignore[arg-type]


class _TorchModule(Runtime):
    """What the three torch formats share: threads, input conversion and output handling."""

    extra: ClassVar[str | None] = "torch"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self.model: Any = None
        self._input_dtype: Any = None

    def load(self) -> None:
        torch = import_optional("torch", self.extra)
        threads = self.options.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.model = self._load(torch)
        self._input_dtype = self._input_dtype or _parameter_dtype(torch, self.model)

    def _load(self, torch: Any) -> Any:
        raise NotImplementedError

    def _forward(self, torch: Any, x: Any) -> Any:
        return _as_tensor(torch, self.model(x))

    def predict(self, batch: Batch) -> Prediction:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._input_dtype)
        with torch.inference_mode():
            out = self._forward(torch, x)
            if self.task == "classification" and self.options.get("output", "logits") == "logits":
                out = out.reshape(out.shape[0], -1)
                out = torch.softmax(out, dim=1) if out.shape[1] > 1 else torch.sigmoid(out)
            scores = out.detach().cpu().numpy()
        return tensor_prediction(scores, self.task, self.classes)

    def describe(self) -> ModelDescription:
        import torch

        return ModelDescription(
            task=self.task or "regression",
            framework="torch",
            framework_version=str(torch.__version__),
            signature=self.signature,
            classes=self.classes,
        )

    def unload(self) -> None:
        self.model = None

    def _corrupt(self, exc: BaseException, what: str) -> CorruptArtifact:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CorruptArtifact(
            f"{self.path.name} cannot be loaded as {what} ({type(exc).__name__}: {first_line})",
            hint="The file is truncated or corrupt, or was saved by an incompatible torch version; "
            "save the model again",
        )


@register_runtime
class TorchScriptRuntime(_TorchModule):
    """A module compiled with `torch.jit.script` or `torch.jit.trace` and saved with `torch.jit.save`.

    Loading TorchScript reads code and tensors without unpickling arbitrary objects.
    """

    format: ClassVar[str] = "torchscript"
    extensions: ClassVar[tuple[str, ...]] = (".pt", ".pth", ".torchscript")
    description: ClassVar[str] = "TorchScript module (torch.jit.save)"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return _is_torchscript(members)

    def _load(self, torch: Any) -> Any:
        try:
            model = torch.jit.load(str(self.path), map_location="cpu")
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise self._corrupt(exc, "a TorchScript module") from None
        return model.eval()


@register_runtime
class TorchExportRuntime(_TorchModule):
    """A program made by `torch.export.export` and saved with `torch.export.save` (`.pt2`).

    The program records the shape of its input, so the signature needs no help. Export with a
    dynamic batch dimension (`dynamic_shapes=({0: torch.export.Dim("batch")},)`); a program
    exported with a static batch of `b` rows is run on chunks of `b` rows, the last chunk
    padded by repeating its last row (the padding rows' outputs are dropped).
    """

    format: ClassVar[str] = "torch-export"
    extensions: ClassVar[tuple[str, ...]] = (".pt2",)
    description: ClassVar[str] = "torch.export program (torch.export.save)"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self._row_shape: tuple[int, ...] | None = None
        self._static_batch: int | None = None

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        if not members:
            return False
        if any(m.endswith("serialized_exported_program.json") for m in members):
            return True  # the layout torch < 2.6 wrote
        roots = _roots_with(members, "archive_format")
        return any(m.startswith(f"{root}/models/") and m.endswith(".json") for root in roots for m in members)

    def _load(self, torch: Any) -> Any:
        try:
            program = torch.export.load(str(self.path))
        except (RuntimeError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
                pickle.UnpicklingError) as exc:  # fmt: skip
            raise self._corrupt(exc, "a torch.export program") from None
        self._read_input_spec(torch, program)
        return program.module()

    def _read_input_spec(self, torch: Any, program: Any) -> None:
        from torch.export.graph_signature import InputKind

        names = [s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
        if len(names) != 1:
            raise ArtifactError(
                f"{self.path.name} is a program with {len(names)} inputs; servekit serves "
                "programs that take one tensor",
                hint="Export a module whose forward takes a single tensor of rows",
            )
        nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        value = nodes[names[0]].meta.get("val") if names[0] in nodes else None
        if value is None or not hasattr(value, "shape") or len(value.shape) < 2:
            return
        dims = [d if isinstance(d, int) else None for d in value.shape]
        if dims[0] is not None:
            self._static_batch = dims[0]
        if None not in dims[1:]:
            self._row_shape = tuple(int(d) for d in dims[1:])
        if value.dtype.is_floating_point:
            self._input_dtype = value.dtype

    def _forward(self, torch: Any, x: Any) -> Any:
        size = self._static_batch
        if size is None or x.shape[0] == size:
            return _as_tensor(torch, self.model(x))
        parts = []
        for start in range(0, x.shape[0], size):
            chunk = x[start : start + size]
            real = chunk.shape[0]
            if real < size:
                chunk = torch.cat([chunk, chunk[-1:].expand(size - real, *chunk.shape[1:])])
            parts.append(_as_tensor(torch, self.model(chunk))[:real])
        return torch.cat(parts)

    def describe(self) -> ModelDescription:
        description = super().describe()
        if self._row_shape is not None:
            dtype = str(self._input_dtype).removeprefix("torch.")
            description.signature = Signature.positional(
                math.prod(self._row_shape),
                row_shape=self._row_shape if len(self._row_shape) > 1 else None,
                array_dtype=dtype,
            )
        if self._static_batch is not None:
            description.extra["static_batch"] = self._static_batch
        return description


@register_runtime
class TorchRuntime(_TorchModule):
    """A file written by `torch.save`: a `state_dict` plus the `module` runtime option naming
    the class to rebuild (and `module_kwargs` for its constructor), or a whole pickled module.

    A whole module is unpickled, which runs code, so it needs trust; a state_dict is read by
    torch's weights-only unpickler and does not.
    """

    format: ClassVar[str] = "torch"
    extensions: ClassVar[tuple[str, ...]] = (".pt", ".pth")
    description: ClassVar[str] = "torch.save file: state_dict + module class, or a pickled nn.Module"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self._weights_only: bool | None = None

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return bool(_roots_with(members, "data.pkl")) and not _is_torchscript(members)

    def needs_trust(self) -> bool:
        """True for a whole pickled module. A state_dict needs no trust, with or without the
        `module` option (without it, `load` says to pass `--module`)."""
        if self.options.get("module"):
            return False
        return not self._holds_only_weights()

    def _holds_only_weights(self) -> bool:
        """Whether torch's weights-only unpickler accepts the file (it never runs code)."""
        if self._weights_only is None:
            torch = import_optional("torch", self.extra)
            try:
                torch.load(str(self.path), map_location="cpu", weights_only=True, mmap=True)
                self._weights_only = True
            except Exception:
                # Refused by the weights-only unpickler: other objects, or a corrupt pickle,
                # which `load` reports without unpickling anything.
                self._weights_only = not _well_formed_pickle(self.path)
        return self._weights_only

    def _load(self, torch: Any) -> Any:
        module_path = self.options.get("module")
        if module_path:
            return self._build(torch, str(module_path), self._read(torch, weights_only=True))
        if not self._holds_only_weights():
            return self._whole_module(torch, self._read(torch, weights_only=False))
        content = self._read(torch, weights_only=True)
        if isinstance(content, Mapping):
            raise MissingInformation(
                f"{self.path.name} holds a state_dict (weights only), not a module", hint=_MODULE_HINT
            )
        raise CorruptArtifact(
            f"{self.path.name} holds a {type(content).__name__}, not a model",
            hint="Save model.state_dict() (and pass --module) or the module itself",
        )

    def _read(self, torch: Any, *, weights_only: bool) -> Any:
        try:
            return torch.load(str(self.path), map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as exc:
            if weights_only and "weights only load failed" in str(exc).lower():
                raise CorruptArtifact(
                    f"{self.path.name} holds more than weights (a pickled module?), so it cannot "
                    "be read with the `module` option",
                    hint="Save model.state_dict() instead, or pack the file without --module "
                    "(loading a pickled module needs --trust)",
                ) from None
            raise self._corrupt(exc, "a torch.save file") from None
        except (ModuleNotFoundError, AttributeError) as exc:
            raise MissingDependency(
                f"{self.path.name} is a pickled module whose class cannot be found ({exc})",
                hint="Make the module's package importable (installed or on PYTHONPATH), or "
                "save model.state_dict() and pass --module package.module:ClassName",
            ) from None
        except (RuntimeError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise self._corrupt(exc, "a torch.save file") from None

    def _whole_module(self, torch: Any, content: Any) -> Any:
        if isinstance(content, torch.nn.Module):
            return content.eval()
        if isinstance(content, Mapping):
            raise MissingInformation(
                f"{self.path.name} holds a {type(content).__name__}, not a module", hint=_MODULE_HINT
            )
        raise CorruptArtifact(
            f"{self.path.name} holds a {type(content).__name__}, not a torch.nn.Module",
            hint="Save model.state_dict() (and pass --module) or the module itself",
        )

    def _build(self, torch: Any, module_path: str, content: Any) -> Any:
        state = _state_dict(content)
        if state is None:
            raise CorruptArtifact(
                f"{self.path.name} holds a {type(content).__name__}, not a state_dict",
                hint="Save it with torch.save(model.state_dict(), path)",
            )
        cls = _import_module_class(torch, module_path)
        kwargs = self.options.get("module_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise InvalidManifest(
                f"runtime option module_kwargs must be a mapping of constructor arguments, got {kwargs!r}",
                hint="Pass --module-kwargs as a JSON object, e.g. '{\"hidden\": 16}'",
            )
        try:
            model = cls(**kwargs)
        except Exception as exc:
            raise InvalidManifest(
                f"cannot build {module_path}(**{dict(kwargs)!r}): {type(exc).__name__}: {exc}",
                hint="Check --module-kwargs against the class's constructor",
            ) from None
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise CorruptArtifact(
                f"the weights in {self.path.name} do not fit {module_path}: {_first_problem(exc)}",
                hint="Check --module and --module-kwargs: they must build the network that was saved",
            ) from None
        if result.missing_keys or result.unexpected_keys:
            problems = []
            if result.missing_keys:
                problems.append(f"missing keys {_keys(result.missing_keys)}")
            if result.unexpected_keys:
                problems.append(f"unexpected keys {_keys(result.unexpected_keys)}")
            raise CorruptArtifact(
                f"the state_dict in {self.path.name} does not match {module_path}: {'; '.join(problems)}",
                hint="Check --module and --module-kwargs: they must build the network that was saved",
            )
        return model.eval()

    def describe(self) -> ModelDescription:
        description = super().describe()
        if self.options.get("module"):
            description.extra["module"] = str(self.options["module"])
        return description


def _well_formed_pickle(path: Path) -> bool:
    """Whether the archive's `data.pkl` parses as a pickle (read without executing it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl"))
            for _ in pickletools.genops(archive.read(name)):
                pass
    except Exception:
        return False
    return True


def _state_dict(content: Any) -> Mapping[str, Any] | None:
    """The state_dict in a file: the mapping itself, or a checkpoint's `state_dict` entry."""
    if not isinstance(content, Mapping):
        return None
    for key in ("state_dict", "model_state_dict"):
        inner = content.get(key)
        if isinstance(inner, Mapping):
            return inner
    return content


def _import_module_class(torch: Any, module_path: str) -> Any:
    """The `nn.Module` subclass named by `package.module:ClassName`."""
    module_name, sep, attribute = module_path.partition(":")
    if not sep:
        module_name, _, attribute = module_path.rpartition(".")
    if not module_name or not attribute:
        raise InvalidManifest(f"runtime option module={module_path!r} is not an import path", hint=_MODULE_HINT)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MissingDependency(
            f"cannot import {module_name!r}, named by module={module_path!r} ({exc})",
            hint="Check the spelling of --module, and install the package that defines the class "
            "or add its folder to PYTHONPATH",
        ) from None
    except Exception as exc:
        raise InvalidManifest(
            f"importing {module_name!r}, named by module={module_path!r}, failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise InvalidManifest(
                f"module {module_name!r} has no attribute {attribute!r} (module={module_path!r})",
                hint="Check the class name after the colon in --module",
            )
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise InvalidManifest(
            f"module={module_path!r} names a {type(obj).__name__}, not a torch.nn.Module subclass",
            hint=_MODULE_HINT,
        )
    return obj


def _parameter_dtype(torch: Any, model: Any) -> Any:
    """The dtype of the model's first floating-point parameter; float32 when it has none."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            if parameter.dtype.is_floating_point:
                return parameter.dtype
    return torch.float32


def _as_tensor(torch: Any, out: Any) -> Any:
    """The output tensor of a forward call; tuples and lists give their first element."""
    if isinstance(out, list | tuple) and out:
        out = out[0]
    if isinstance(out, Mapping) and len(out) == 1:
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise PredictionFailed(f"the model returned a {type(out).__name__}, not a tensor")
    if out.ndim == 0:
        raise PredictionFailed("the model returned a scalar, not one output per row")
    return out.float() if not out.dtype.is_floating_point else out


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


def _first_problem(exc: RuntimeError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
