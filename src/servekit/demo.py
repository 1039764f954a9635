"""The example model: an iris classifier trained from scikit-learn's bundled data and pushed to
the registry, so `servekit demo` (and `make run`) serve something real in seconds."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from servekit.errors import NotFound
from servekit.registry import RegisteredVersion, Registry

__all__ = ["DEMO_ALIAS", "DEMO_MODEL", "ensure_demo_model"]

DEMO_MODEL = "iris"
DEMO_ALIAS = "production"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def ensure_demo_model(registry: Registry) -> RegisteredVersion:
    """The demo model at `iris@production`, trained and pushed on first use."""
    try:
        return registry.resolve(f"{DEMO_MODEL}@{DEMO_ALIAS}")
    except NotFound:
        pass
    import joblib
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    from servekit.packing import pack

    data = load_iris()
    labels = [str(n) for n in data.target_names]
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=0)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_train, [labels[i] for i in y_train])
    accuracy = float(model.score(X_test, [labels[i] for i in y_test]))
    with tempfile.TemporaryDirectory(prefix="servekit-demo-") as scratch:
        artifact = Path(scratch) / "iris.joblib"
        joblib.dump(model, artifact)
        bundle = pack(
            artifact,
            name=DEMO_MODEL,
            output=Path(scratch) / "bundle",
            sample=pd.DataFrame(X_train, columns=FEATURES),
            metrics={"accuracy": round(accuracy, 4)},
            tags={"dataset": "iris", "source": "servekit demo"},
            features=FEATURES,
            training_date=date.today().isoformat(),
            description="Iris species from flower measurements (RandomForest, 50 trees)",
            trust=True,  # trained just now, in this process
        )
        pushed = registry.push(bundle)
    return registry.promote(DEMO_MODEL, pushed.version, DEMO_ALIAS)
