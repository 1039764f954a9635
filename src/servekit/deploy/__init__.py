"""Deployment artifacts: `servekit build TARGET MODEL -o DIR`.

Pure render functions per target (`targets.py`, Jinja templates under `templates/`) turn a
`DeployContext` into text; `write.py` is the one step that writes files. Targets: docker,
heroku, lambda, cloudrun, azure, k8s.
"""

from __future__ import annotations

from servekit.deploy.build import BuildResult, build
from servekit.deploy.context import DeployContext, context_for
from servekit.deploy.targets import TARGETS, Target, get_target

__all__ = ["TARGETS", "BuildResult", "DeployContext", "Target", "build", "context_for", "get_target"]
