"""The manifests' JSON schemas (data only, no code).

This folder stays at the top of the repository, where people and other tools find it, and is
installed as the package `gitops_agent.schemas` (pyproject.toml's package-dir), so that
`gitops_agent.manifests` loads the same files with importlib.resources from a wheel, a pipx
install or an editable checkout.
"""
