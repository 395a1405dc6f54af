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
