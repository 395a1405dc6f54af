"""Benchmark harness for gitops-agent (issue 5).

One command, ``.venv/bin/python -m benchmarks [--runs N] [--quick] [--only NAME[,NAME]] [--out FILE]``,
runs six workloads side by side with what a user would use instead (``podman
kube play``, a loop of ``podman run -d``), prints a table (medians, with the
issue's targets and whether each is met) and regenerates the results part of
BENCHMARKS.md (between ``<!-- results:begin -->`` and ``<!-- results:end -->``;
everything else in the file is kept).

Every Podman used here is a private service (own storage, socket, network and
mount namespace: ``tests/podman_env.start_node``); the host's Podman is never
touched. Workloads: ``cold-apply``, ``noop``, ``rollout``, ``validate``,
``memory``, ``poll`` (see ``benchmarks/workloads.py``).
``python -m benchmarks.profile`` profiles the no-op sync and the cold apply.
``python -m benchmarks.passes_ab`` times the no-op pass with each issue-14 change switched off and on, in one process.
``python -m benchmarks.fleet`` measures the Git server side of an agent on every node (``git daemon`` and
``git http-backend`` answering ``ls-remote`` polls; issue 14), into its own block of BENCHMARKS.md.
"""
