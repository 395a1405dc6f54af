"""Registry credentials (pure): docker-config parsing, registry matching, validation of pull Secrets."""

from __future__ import annotations

import base64
import json

import pytest

from gitops_agent import pullauth
from gitops_agent.pullauth import Credential, for_image, image_registry, normalize_registry, parse
from test_manifests import problems, y

TOKEN = "TOPSECRET-value"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_reads_auth_and_username_password_and_hides_values() -> None:
    """Both ways of writing a credential give the same user and password; repr shows neither."""
    doc = {"auths": {"https://index.docker.io/v1/": {"auth": b64(f"me:{TOKEN}")},
                     "reg.example:5000": {"username": "me", "password": TOKEN}}}
    hub, reg = parse(json.dumps(doc).encode(), True, "Secret a/b")
    assert (hub.registry, hub.username, hub.password) == ("docker.io", "me", TOKEN)
    assert (reg.registry, reg.username, reg.password) == ("reg.example:5000", "me", TOKEN)
    assert TOKEN not in repr(hub) and "me" not in repr(hub).replace("name", "")
    header = json.loads(base64.urlsafe_b64decode(reg.header()))
    assert header == {"serveraddress": "reg.example:5000", "username": "me", "password": TOKEN}


def test_legacy_dockercfg_has_no_auths_wrapper() -> None:
    (cred,) = parse(json.dumps({"reg:1": {"auth": b64("u:p")}}).encode(), False, "Secret a/old")
    assert (cred.registry, cred.username, cred.password, cred.source) == ("reg:1", "u", "p", "Secret a/old")


@pytest.mark.parametrize("data, message", [
    (b"{not json", "is not valid JSON"),
    (b'{"reg:1": {}}', "must be a JSON object with an 'auths' object"),
    (json.dumps({"auths": {"reg:1": {"auth": "!!" + TOKEN}}}).encode(), "the 'auth' of registry 'reg:1' is not base64"),
    (json.dumps({"auths": {"reg:1": {"username": TOKEN}}}).encode(), "registry 'reg:1' has no credentials"),
])
def test_bad_docker_config_is_explained_without_its_values(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse(data, True, "x")
    assert message in str(err.value) and TOKEN not in str(err.value)


def test_registry_of_an_image_and_normalized_keys() -> None:
    assert image_registry("nginx:1") == "docker.io"
    assert image_registry("team/app") == "docker.io"
    assert image_registry("127.0.0.1:5000/team/app@sha256:" + "0" * 64) == "127.0.0.1:5000"
    assert image_registry("localhost/x:1") == "localhost"
    assert normalize_registry("https://reg.example:5000/v2/") == "reg.example:5000"
    assert normalize_registry("registry-1.docker.io/team") == "docker.io/team"


def test_the_longest_repository_prefix_wins_then_the_first_source() -> None:
    host = Credential("reg:1", "Secret a/host")
    team = Credential("reg:1/team", "Secret a/team")
    node = Credential("reg:1", "auth file /x")
    assert for_image("reg:1/team/web:1", [host, team, node]) is team
    assert for_image("reg:1/other/web:1", [host, team, node]) is host
    assert for_image("reg:1/other/web:1", [node, host]) is node
    assert for_image("reg:2/team/web:1", [host, team]) is None
    assert for_image("web:1", [Credential("docker.io", "s")]).source == "s"  # type: ignore[union-attr]


def test_pull_secrets_are_validated_without_quoting_values() -> None:
    """Secret types and keys are checked; imagePullSecrets must name a registry Secret of the namespace, with
    credentials (a registry Secret without them is valid, as in Kubernetes, but cannot pull: the problem is at the
    pod that names it)."""
    good = b64(json.dumps({"auths": {"reg:1": {"auth": b64(f"u:{TOKEN}")}}}))
    docs = {
        "s.yaml": y(f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: reg}}
            type: kubernetes.io/dockerconfigjson
            data:
              .dockerconfigjson: {good}
        """),
        "b.yaml": y(f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: bad}}
            type: kubernetes.io/dockerconfigjson
            stringData:
              .dockerconfigjson: '{{"auths": {{"r:1": {{"username": "{TOKEN}"}}}}}}'
        """),
        "c.yaml": y("""
            apiVersion: v1
            kind: Secret
            metadata: {name: nokey}
            type: kubernetes.io/dockercfg
            stringData: {x: y}
        """),
        "o.yaml": y("""
            apiVersion: v1
            kind: Secret
            metadata: {name: opaque}
            stringData: {a: b}
        """),
        "p.yaml": y("""
            apiVersion: v1
            kind: Pod
            metadata: {name: p}
            spec:
              imagePullSecrets: [{name: reg}, {name: gone}, {name: opaque}, {name: bad}]
              containers: [{name: c, image: "reg:1/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]
        """),
    }
    found = problems(docs)
    assert found == [
        "c.yaml:1: Secret/nokey: data: a Secret of type kubernetes.io/dockercfg needs the key '.dockercfg' "
        "(in data or stringData)",
        "p.yaml:5: Pod/p: spec.imagePullSecrets[1].name: Secret 'gone' does not exist in namespace 'default'",
        f"p.yaml:5: Pod/p: spec.imagePullSecrets[2].name: Secret 'opaque' is of type Opaque; imagePullSecrets "
        f"need type {pullauth.DOCKERCONFIGJSON} or {pullauth.DOCKERCFG}",
        "p.yaml:5: Pod/p: spec.imagePullSecrets[3].name: Secret 'bad' cannot pull images: .dockerconfigjson: "
        "registry 'r:1' has no credentials (needs 'auth', 'username'+'password' or 'identitytoken')",
    ]
    assert not any(TOKEN in p for p in found)


def test_a_registry_secret_is_checked_as_kubernetes_does_until_a_pod_pulls_with_it() -> None:
    """The documentation's kubernetes.io/dockercfg example (an 'auth' that is not user:password) is a valid
    Secret, as in Kubernetes, which only checks that the value is a JSON object; a value that is not one is still
    an error at the Secret, without the value."""
    example = base64.b64encode(b'{"auths":{"https://example/v1/":{"auth":"opensesame"}}}\n').decode()
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: cfg}\ntype: kubernetes.io/dockercfg\n" \
        "data:\n  .dockercfg: %s\n"
    from test_manifests import ok
    (cfg,) = ok({"s.yaml": secret % example}).objects
    assert cfg.ref.name == "cfg"
    for value, message in ((b"[1, 2]", "must be a JSON object (docker config format)"),
                           (b"{" + TOKEN.encode(), "is not valid JSON")):
        assert problems({"s.yaml": secret % base64.b64encode(value).decode()}) == [
            f"s.yaml:6: Secret/cfg: data[\".dockercfg\"]: {message}"]


def test_a_bad_node_auth_file_is_a_config_error_naming_the_file(tmp_path) -> None:
    from gitops_agent import config as config_mod
    from gitops_agent.errors import ConfigError

    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"reg:1": {"password": TOKEN}}}))
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"source: {{url: /x}}\nnodes: [{{name: n1, authFile: auth.json}}]\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(str(cfg))
    assert str(err.value) == f"nodes[0].authFile: {auth} registry 'reg:1' has no credentials " \
                             "(needs 'auth', 'username'+'password' or 'identitytoken')"
    auth.write_text(json.dumps({"auths": {"reg:1": {"username": "u", "password": TOKEN}}}))
    (node,) = config_mod.load(str(cfg)).nodes
    assert [c.registry for c in node.credentials] == ["reg:1"] and TOKEN not in repr(node)


def test_registry_size_from_a_manifest_or_from_podmans_error_quoting_it() -> None:
    """Podman 4.3 answers a remote single-image manifest inspect with an error quoting the manifest."""
    from gitops_agent.podman import manifest_size

    quoted = (r'parsing manifest blob "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:48\",\"size\":424},'
              r'\"layers\":[{\"digest\":\"sha256:7f\",\"size\":1083964}]}" as a "application/vnd.oci.image.manifest'
              r'.v1+json": Treating single images as manifest lists is not implemented')
    assert manifest_size(quoted) == 1084388
    assert manifest_size({"config": {"size": 1}, "layers": [{"size": 5}, {"size": 7}]}) == 13
    assert manifest_size({"manifests": [{"size": 500}]}) is None  # a multi-arch list: sizes unknown
    assert manifest_size("manifest unknown") is None


def test_space_rule_and_min_free_quantities(tmp_path) -> None:
    from gitops_agent import config as config_mod
    from gitops_agent.apply import space_ok
    from gitops_agent.errors import ConfigError

    assert space_ok(reported=100, free=1000, min_free=800)  # 1000 - 2 * 100 = 800 left
    assert not space_ok(reported=101, free=1000, min_free=800)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("source: {url: /x}\nimages: {minFree: 500Mi, keepRevisions: 3}\n")
    loaded = config_mod.load(str(cfg))
    assert (loaded.min_free_image_space, loaded.keep_image_revisions) == (500 * 2**20, 3)
    cfg.write_text("source: {url: /x}\nimages: {keepRevisions: 21}\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml:2: images\.keepRevisions: must be at most 20"):
        config_mod.load(str(cfg))
    cfg.write_text("source: {url: /x}\nimages: {minFree: lots}\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml:2: images\.minFree: must be bytes or a quantity such as 500Mi"):
        config_mod.load(str(cfg))


def test_pull_secrets_reach_the_pod_spec_but_not_its_template_hash() -> None:
    """Adding or changing imagePullSecrets replaces no pod; the credentials ride on the pod spec, unprinted."""
    from gitops_agent.config import NodeConfig
    from gitops_agent.desired import compile_node
    from test_manifests import ok

    secret = y(f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: reg}}
        type: kubernetes.io/dockerconfigjson
        stringData:
          .dockerconfigjson: '{{"auths": {{"reg:1": {{"username": "u", "password": "{TOKEN}"}}}}}}'
    """)

    def pod(pull_secrets: str) -> str:
        return y(f"""
            apiVersion: v1
            kind: Pod
            metadata: {{name: p}}
            spec:
              {pull_secrets}
              containers: [{{name: c, image: "reg:1/a/b:1"}}]
        """)

    nodes = (NodeConfig("n1"),)
    plain = compile_node(ok({"s.yaml": secret, "p.yaml": pod("")}), nodes[0], nodes).workloads[0]
    with_secret = compile_node(ok({"s.yaml": secret, "p.yaml": pod("imagePullSecrets: [{name: reg}]")}), nodes[0],
                               nodes).workloads[0]
    assert plain.template_hash == with_secret.template_hash
    (cred,) = with_secret.pods[0].pull_credentials
    assert (cred.registry, cred.source, cred.password) == ("reg:1", "Secret default/reg", TOKEN)
    assert plain.pods[0].pull_credentials == () and TOKEN not in repr(with_secret)
