"""`signature.json` and `README.md` of an export: what the standalone predictor needs to know.

`signature.json` holds the feature names and dtypes, the task, the classes (as servekit names
them, and as the graph labels them), the ONNX inputs and how the file was verified. The
standalone predictor reads it instead of the manifest, so it needs neither servekit nor YAML.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from servekit import __version__
from servekit.bundle import Bundle
from servekit.edge.variant import OnnxFile
from servekit.runtimes import get_runtime

__all__ = ["SCHEMA", "readme", "signature_document"]

SCHEMA = "servekit-edge/1"
_SHOWN_FEATURES = 12


def signature_document(bundle: Bundle, onnx: OnnxFile) -> dict[str, Any]:
    """The content of `signature.json` for shipping `onnx` as the model of `bundle`."""
    manifest = bundle.manifest
    signature = bundle.signature
    runtime = get_runtime("onnx")(onnx.path)
    runtime.configure(signature, None, manifest.task)  # no classes: describe() gives the graph's own
    runtime.load()
    try:
        described = runtime.describe()
    finally:
        runtime.unload()
    inputs = [{"name": i["name"], "dtype": i["type"], "shape": i["shape"]} for i in described.extra.get("inputs", [])]
    classifier = manifest.task == "classification"
    return {
        "schema": SCHEMA,
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "features": [{"name": f.name, "dtype": f.dtype} for f in signature.features],
        "row_shape": list(signature.row_shape) if signature.row_shape is not None else None,
        "allow_nan": signature.allow_nan,
        "classes": list(manifest.classes) if classifier and manifest.classes is not None else None,
        "model_classes": list(described.classes) if classifier and described.classes is not None else None,
        "example_row": _example_row(bundle),
        "input_name": inputs[0]["name"] if inputs else None,
        "input_dtype": inputs[0]["dtype"] if inputs else None,
        "inputs": inputs,
        "variant": onnx.variant,
        "verification": onnx.facts,
        "source": {
            "format": manifest.format,
            "framework": manifest.framework,
            "framework_version": manifest.framework_version,
        },
        "exported_by": f"servekit {__version__}",
        "onnxruntime_version": described.framework_version,
    }


def readme(document: dict[str, Any]) -> str:
    """Usage of the export folder, for someone who has never heard of servekit."""
    names = [f["name"] for f in document["features"]]
    shown = ", ".join(f"`{n}`" for n in names[:_SHOWN_FEATURES])
    if len(names) > _SHOWN_FEATURES:
        shown += f", … ({len(names)} in all)"
    example = document.get("example_row")
    row = json.dumps(example, ensure_ascii=False) if example is not None and len(names) <= _SHOWN_FEATURES else None
    typical = "a typical row (the training data's medians)" if row is not None else "your rows"
    row = row or "[" + ", ".join(["..."] * min(len(names), 3)) + "]"
    classes = document["classes"] if document["classes"] is not None else document["model_classes"]
    what = (
        f"a classifier of {', '.join(f'`{c}`' for c in classes)}"
        if document["task"] == "classification" and classes
        else f"a {document['task']} model"
    )
    version = f" version {document['version']}" if document["version"] is not None else ""
    verified = _verified(document)
    return f"""# `{document["name"]}`{version}: a standalone ONNX model

Exported by {document["exported_by"]} ({document["variant"]} variant of a {document["source"]["format"]} model):
{what}, taking {len(names)} features in this order: {shown}.
{verified}

## Files

- `model.onnx`: the model, for any ONNX runtime
- `predictor.py`: a small Python predictor that needs only `onnxruntime` and `numpy`
- `signature.json`: feature names and dtypes, classes, the ONNX input and how the file was verified

## Use

```sh
python -m pip install onnxruntime numpy
echo {shlex.quote(f"[{row}]")} > rows.json          # {typical}
python predictor.py rows.json
```

prints `{{"predictions": [...]}}`, one record per row: `prediction` (the label or the value), and for
classifiers `probabilities` by class and `confidence` (the highest probability). Rows are JSON lists
in feature order or objects by feature name; `{{"instances": [...]}}` works too, and `-` reads stdin.

```python
from predictor import Predictor

# the folder predictor.py is in, by default
model = Predictor("path/to/this/folder")
# rows as lists, a 2-D numpy array, or dicts by feature name
model.predict([{row}])
```

A row with the wrong number of values, a missing or unknown feature name, text where a number
belongs, or NaN/Infinity raises `ValueError` saying which row and feature.
"""


def _example_row(bundle: Bundle) -> list[Any] | None:
    """A typical row from the reference profile: each number's median, each text's most
    frequent value; `None` without a profile (or for tensor models)."""
    profile = (bundle.manifest.profile or {}).get("features") or {}
    signature = bundle.signature
    if signature.row_shape is not None:
        return None
    row: list[Any] = []
    for feature in signature.features:
        entry = profile.get(feature.name) or {}
        if feature.numeric and "0.5" in (entry.get("quantiles") or {}):
            row.append(round(float(entry["quantiles"]["0.5"]), 6))
        elif not feature.numeric and entry.get("frequencies"):
            frequencies = entry["frequencies"]
            row.append(max(frequencies, key=frequencies.get))
        else:
            return None
    return row


def _verified(document: dict[str, Any]) -> str:
    facts = document["verification"]
    if document["variant"] == "original":
        return "The model was an ONNX file already: this is that file."
    parts = []
    if "label_agreement" in facts:
        parts.append(f"labels agree on {facts['label_agreement']:.1%} of rows")
    if "max_abs_diff" in facts:
        parts.append(f"largest difference {facts['max_abs_diff']:.2g}")
    checked = ", ".join(parts) or "verified when it was stored"
    if "rows_checked" in facts:
        checked += f" on {facts['rows_checked']} rows"
    return f"Checked against the original model: {checked}."
