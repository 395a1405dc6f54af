"""A corpus of bad manifests: each entry is (files, a fragment of the error it must give).

Files map a repository path to bytes, or to ("symlink", target). Shared by the
end-to-end bad-input test (tests/test_bad_input.py) and RELIABILITY.md.
"""

from __future__ import annotations

GOOD_DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: localhost/gitops-test/web:1}]
"""

_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)

CORPUS: dict[str, tuple[dict[str, bytes | tuple[str, str]], str]] = {
    "malformed YAML": ({"bad.yaml": b"apiVersion: v1\nkind: [unclosed\n"}, "invalid YAML"),
    "duplicate keys": ({"dup.yaml": GOOD_DEPLOY.replace("metadata: {name: web}", "metadata: {name: web, name: web2}").encode()}, "duplicate key"),
    "YAML alias bomb": ({"bomb.yaml": _BOMB.encode()}, "expands to more than"),
    "huge file": ({"huge.yaml": b"# " + b"x" * (2 << 20) + b"\n"}, "bytes"),
    "binary file": ({"bin.yaml": b"\x00\x01\x02\xff\xfe binary"}, "bin.yaml"),
    "symlink outside the repository": ({"link.yaml": ("symlink", "/etc/passwd")}, "symlink"),
    "wrong type": ({"web.yaml": GOOD_DEPLOY.replace("replicas: 1", "replicas: three").encode()}, "spec.replicas"),
    "unknown kind": ({"cron.yaml": b"apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {}\n"}, "CronJob"),
    "unknown field": ({"web.yaml": GOOD_DEPLOY.replace("replicas: 1", "replicaz: 1").encode()}, "replicaz"),
    "python tag": ({"tag.yaml": b"!!python/object/apply:os.system ['touch /tmp/pwned']\n"}, "tag.yaml"),
    "undeclared namespace": ({"web.yaml": GOOD_DEPLOY.replace("metadata: {name: web}", "metadata: {name: web, namespace: nowhere}").encode()}, "nowhere"),
    "invalid base64 in a Secret": ({"s.yaml": b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!notbase64'}\n"}, "base64"),
    "thousands of files": ({f"many/f{i:04d}.yaml": b"# empty\n" for i in range(5001)}, "5000"),
}

# --- class: every message built from a Secret's value -----------------------------------------------
# Each entry puts SECRET_CANARY through one path that builds an error message from a value (YAML tags,
# type errors, length errors, base64 errors, duplicate keys, YAML syntax errors, schema errors). The
# revision must be rejected at that file, and the canary (or its base64) must appear in no message,
# no stored state and no output (tests/test_manifests.py, tests/test_bad_input.py).

SECRET_CANARY = "canary-7Hq2xZ-do-not-print"
CANARY_B64 = "Y2FuYXJ5LTdIcTJ4Wi1kby1ub3QtcHJpbnQ="  # base64 of SECRET_CANARY


def _secret(body: str) -> bytes:
    text = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\n{body}\n"
    return text.replace("CANARY", SECRET_CANARY).encode()


SECRET_LEAKS: dict[str, bytes] = {
    "!!int tag": _secret("stringData: {TOKEN: !!int CANARY}"),
    "!!float tag": _secret("stringData: {TOKEN: !!float CANARY}"),
    "!!bool tag": _secret("stringData: {TOKEN: !!bool CANARY}"),
    "!!null tag": _secret("stringData: {TOKEN: !!null CANARY}"),
    "!!int tag in data": _secret("data: {TOKEN: !!int CANARY}"),
    "unsupported tag": _secret("stringData: {TOKEN: !vault CANARY}"),
    "list instead of a string": _secret("stringData: {TOKEN: [CANARY]}"),
    "mapping instead of a string": _secret("stringData: {TOKEN: {CANARY: CANARY}}"),
    "not base64": _secret("data: {TOKEN: CANARY}"),
    # (a line break is allowed, as in Kubernetes: tests/test_served_forms.py; a space is not)
    "base64 with a space": _secret(f"data: {{TOKEN: \"{CANARY_B64[:8]} {CANARY_B64[8:]}\"}}"),
    "512000 bytes": _secret("stringData: {TOKEN: CANARY" + "x" * (512_000 - len(SECRET_CANARY)) + "}"),
    "512000 bytes in data": _secret("data: {TOKEN: " + __import__("base64").b64encode(
        (SECRET_CANARY + "x" * (512_000 - len(SECRET_CANARY))).encode()).decode() + "}"),
    "duplicate key": _secret("stringData:\n  TOKEN: CANARY\n  TOKEN: CANARY-2"),
    "unknown field": _secret("stringdata: {TOKEN: CANARY}"),
    "type field": _secret("type: CANARY\nstringData: {TOKEN: x}"),
    "non-string key": _secret("stringData: {1: CANARY, 2: [CANARY]}"),
    "merge key": _secret("stringData: {<<: CANARY}"),
    "unclosed flow mapping": _secret("stringData: {TOKEN: CANARY"),
    "bad escape": _secret('stringData: {TOKEN: "CANARY\\q"}'),
    "control character": _secret("stringData: {TOKEN: CANARY\x01}"),
    "empty value mounted as a file": _secret("stringData: {TOKEN: CANARY, EMPTY: ''}") + b"""---
apiVersion: v1
kind: Pod
metadata: {name: leak}
spec:
  containers:
    - name: c
      image: localhost/gitops-test/web:1
      volumeMounts: [{name: s, mountPath: /s}]
  volumes: [{name: s, secret: {secretName: creds}}]
""",
}

# --- class: what the node refuses that validate must know --------------------------------------------
# Measured on Podman 4.3.1 (README, "What validate checks for the node"): a secret holds 1 to 511999
# bytes and its name at most 64 characters; a volume name at most 255 (its directory), a network name
# at most 250 (`<name>.json`); a CPU quota of at least 1 ms and at most 2^44-1 us per period; and the
# config's `limits:`. Each entry: (files, a fragment of its error).

_CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: DATA\n"


def _mounting(config: str, data: str, name: str = "site") -> bytes:
    deploy = GOOD_DEPLOY.replace(
        "containers: [{name: web, image: localhost/gitops-test/web:1}]",
        "containers: [{name: web, image: localhost/gitops-test/web:1, volumeMounts: [{name: v, mountPath: /v}]}]\n"
        f"      volumes: [{{name: v, configMap: {{name: {name}}}}}]",
    )
    return (_CONFIG.replace("NAME", name).replace("DATA", data) + "---\n" + deploy + config).encode()


def _cpu(limit: str) -> bytes:
    return GOOD_DEPLOY.replace("image: localhost/gitops-test/web:1}",
                               f"image: localhost/gitops-test/web:1, resources: {{limits: {{cpu: {limit}}}}}}}").encode()


NODE_LIMITS: dict[str, tuple[dict[str, bytes | tuple[str, str]], str]] = {
    "empty ConfigMap value mounted as a file": ({"web.yaml": _mounting("", "{index.html: ''}")},
                                                "Podman secrets cannot be empty"),
    "value of exactly 512000 bytes": ({"web.yaml": _mounting("", "{big: " + "x" * 512_000 + "}")},
                                      "holds at most 511999"),
    "253-character PVC name": ({"pvc.yaml": (
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: " + "d" * 253 + "}\n"
        "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n").encode()},
        "longer than Podman's limit of 255"),
    "terminationGracePeriodSeconds beyond int64": ({"web.yaml": GOOD_DEPLOY.replace(
        "    spec:\n", "    spec:\n      terminationGracePeriodSeconds: 9223372036854775808\n").encode()},
        "must be at most 2147483647"),
    "maxSurge beyond int32": ({"web.yaml": GOOD_DEPLOY.replace(
        "  replicas: 1\n", "  replicas: 1\n  strategy: {rollingUpdate: {maxSurge: 99999999999}}\n").encode()},
        "must be at most 2147483647"),
    "CPU limit under 10m": ({"web.yaml": _cpu("5m")}, "must be at least 10m"),
    "CPU limit over the kernel's quota": ({"web.yaml": _cpu("200000000")}, "is too large"),
    "memory limit under 4Mi": ({"web.yaml": GOOD_DEPLOY.replace(
        "image: localhost/gitops-test/web:1}", "image: localhost/gitops-test/web:1, resources: {limits: {memory: 3Mi}}}",
    ).encode()}, "must be at least 4Mi"),
    "replicas: 100000": ({"web.yaml": GOOD_DEPLOY.replace("replicas: 1", "replicas: 100000").encode()},
                         "limits.maxPodsPerNode"),
    "21 containers in a pod": ({"web.yaml": GOOD_DEPLOY.replace(
        "containers: [{name: web, image: localhost/gitops-test/web:1}]",
        "containers: [" + ", ".join(f"{{name: c{i}, image: localhost/gitops-test/web:1}}" for i in range(21)) + "]",
    ).encode()}, "limits.maxContainersPerPod"),
    "file name with a newline": (
        {"web\nnot-a-problem.yaml": GOOD_DEPLOY.replace("replicas: 1", "replicas: x").encode()},
        '"web\\nnot-a-problem.yaml":5'),
}
