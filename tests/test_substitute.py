"""Per-node variables (gitops_agent/substitute.py): pure, from literals and from YAML text.

`_parse` below is the shape of the wiring: the YAML loader hands over, per document, the plain value, the
line of every JSON path and which scalars were quoted (PyYAML's node.style), and substitution takes them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_agent import config
from gitops_agent.errors import ConfigError
from gitops_agent.substitute import (ANNOTATION, NAME, JsonPath, Variable, Where, expand, file_opts_in,
                                     label_variable, node_variables, substitute, typed, variables_from)

ON = {"annotations": {ANNOTATION: "enabled"}}


def _parse(text: str) -> tuple[dict[str, Any], dict[JsonPath, int], set[JsonPath]]:
    """One YAML document: its value, the line of every path (a mapping entry at its key), the quoted scalars."""
    lines: dict[JsonPath, int] = {}
    quoted: set[JsonPath] = set()

    def build(node: yaml.Node, path: JsonPath) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                result[key.value] = build(value, path + (key.value,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (index,)) for index, item in enumerate(node.value)]
        if node.style is not None:
            quoted.add(path)
        return yaml.SafeLoader(node.value).construct_object(node) if node.style is None else node.value

    body = build(yaml.compose(text, Loader=yaml.SafeLoader), ())
    return body, lines, quoted


def _where(lines: dict[JsonPath, int] | None = None, quoted: set[JsonPath] | None = None,
           obj: str = "Deployment/web") -> Where:
    def line_of(path: JsonPath) -> int:
        while lines and path not in lines:
            path = path[:-1]
        return lines[path] if lines else 1

    return Where("apps/web.yaml", obj, line_of, lambda path: path in (quoted or set()))


def _vars(**values: str) -> dict[str, Variable]:
    return {name: Variable(value, "vars of node edge-1") for name, value in values.items()}


def test_syntax() -> None:
    """${NAME}, both default forms (undefined or empty), $${NAME} as text, a lone $ kept."""
    variables = _vars(TAG="1.2", EMPTY="")
    cases = {
        "app:${TAG}": "app:1.2",
        "${TAG}-${TAG}": "1.2-1.2",
        "${MISSING:=fallback}": "fallback",
        "${MISSING:-fallback}": "fallback",
        "${EMPTY:-fallback}": "fallback",
        "${EMPTY}": "",
        "${TAG:=unused}": "1.2",
        "${MISSING:=}": "",
        "$${TAG} is literal": "${TAG} is literal",
        "cost: $5, $$ and $": "cost: $5, $$ and $",
        "echo $HOME": "echo $HOME",
        "${MISSING:-a:b-c=d}": "a:b-c=d",
    }
    for text, want in cases.items():
        found = expand(text, variables)
        assert (found.text, found.errors) == (want, []), text


def test_errors_name_the_variable_and_never_the_text() -> None:
    """Undefined without default, unterminated and malformed references: errors with positions, no text."""
    assert expand("pw-${NOPE}", {}).errors == [
        "undefined variable NOPE (no default: set it in the node's vars or labels, substituteFrom, "
        "or write ${NOPE:=default})"]
    assert expand("s3cr3t${oops", {}).errors == [
        "unterminated reference at character 7 (close it with }, or write $${ for the text ${)"]
    assert expand("hunter2 ${1abc} ${a b}", {}).errors == [
        "invalid variable reference at character 9 (expected ${NAME}, ${NAME:=default} or ${NAME:-default})",
        "invalid variable reference at character 17 (expected ${NAME}, ${NAME:=default} or ${NAME:-default})"]


def test_types_of_a_whole_plain_reference() -> None:
    """JSON/YAML 1.2 numbers and booleans become typed; ambiguous or YAML 1.1-only spellings stay text."""
    assert [typed(t) for t in ("3", "-2", "0", "0.5", "1e3", "1.10", "true", "False")] == \
        [3, -2, 0, 0.5, 1000.0, 1.1, True, False]
    assert [typed(t) for t in ("007", "yes", "on", "null", "~", "1_000", "0x1F", "3 ", "", "v1")] == \
        ["007", "yes", "on", "null", "~", "1_000", "0x1F", "3 ", "", "v1"]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    ${KEY}: web
  annotations:
    gitops-agent.io/substitute: enabled
spec:
  replicas: ${REPLICAS}
  template:
    spec:
      containers:
        - name: web
          image: "registry.local/web:${TAG:=1.0}"
          env:
            - name: PORT
              value: "${PORT}"
            - name: ZONE
              value: ${NODE_LABEL_zone}
            - name: LITERAL
              value: $${LITERAL}
"""


def test_a_parsed_manifest_per_node() -> None:
    """Two nodes, one document: replicas an int from a plain reference, quoted values stay strings,
    keys and `$${...}` untouched, the input not changed."""
    body, lines, quoted = _parse(DEPLOYMENT)
    original = copy.deepcopy(body)
    where = _where(lines, quoted)
    results = {}
    for node, zone, extra in (("edge-1", "north", {"REPLICAS": "3", "PORT": "8080"}),
                              ("edge-2", "south", {"REPLICAS": "1", "PORT": "9090", "TAG": "2.0"})):
        variables = node_variables(node, extra, {"zone": zone})
        results[node] = substitute(body, variables, where)
    assert body == original
    one, two = results["edge-1"], results["edge-2"]
    assert one.problems == two.problems == ()
    assert (one.body["spec"]["replicas"], two.body["spec"]["replicas"]) == (3, 1)
    container = one.body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/web:1.0"
    assert two.body["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/web:2.0"
    assert container["env"] == [{"name": "PORT", "value": "8080"}, {"name": "ZONE", "value": "north"},
                                {"name": "LITERAL", "value": "${LITERAL}"}]
    assert one.body["metadata"]["labels"] == {"${KEY}": "web"}


def test_a_per_node_invalid_value_is_left_for_validation_and_undefined_is_a_problem_at_its_line() -> None:
    """On a node where REPLICAS is "three" the value stays a string (the schema then rejects it for that node);
    where PORT is undefined the Problem names FILE:LINE, the object and the path."""
    body, lines, quoted = _parse(DEPLOYMENT)
    result = substitute(body, node_variables("edge-2", {"REPLICAS": "three"}, {"zone": "south"}),
                        _where(lines, quoted))
    assert result.body["spec"]["replicas"] == "three"
    assert [str(problem) for problem in result.problems] == [
        "apps/web.yaml:18: Deployment/web: spec.template.spec.containers[0].env[0].value: undefined variable PORT "
        "(no default: set it in the node's vars or labels, substituteFrom, or write ${PORT:=default})"]


def test_only_objects_that_opt_in_are_touched() -> None:
    """Without the annotation (or with another value) an object is returned as it is, undefined references and all."""
    script = {"kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"run.sh": "echo ${HOME} ${UNDEFINED}"}}
    assert substitute(script, {}, _where()).body is script
    off = {**script, "metadata": {"name": "s", "annotations": {ANNOTATION: "disabled"}}}
    assert substitute(off, {}, _where()).problems == ()
    on = {**script, "metadata": {"name": "s", **ON}}
    assert len(substitute(on, {}, _where()).problems) == 2


def test_precedence_vars_labels_builtins_substitute_from() -> None:
    """vars > labels > built-ins > substituteFrom (a later source over an earlier one)."""
    first = {"A": Variable("from-cm1", "ConfigMap cm1"), "B": Variable("from-cm1", "ConfigMap cm1"),
             "NODE_NAME": Variable("from-cm1", "ConfigMap cm1")}
    second = {"B": Variable("from-cm2", "ConfigMap cm2"), "NODE_LABEL_zone": Variable("cm2", "ConfigMap cm2")}
    variables = node_variables("edge-1", {"C": "from-vars", "NODE_LABEL_zone": "vars-zone"},
                               {"zone": "north", "topology.kubernetes.io/region": "eu"}, [first, second])
    values = {name: variable.value for name, variable in variables.items()}
    assert values == {"A": "from-cm1", "B": "from-cm2", "NODE_NAME": "edge-1", "NODE_LABEL_zone": "vars-zone",
                      "NODE_LABEL_topology_kubernetes_io_region": "eu", "C": "from-vars"}
    assert label_variable("app.kubernetes.io/part-of") == "NODE_LABEL_app_kubernetes_io_part_of"


def test_label_name_collisions_and_bad_var_names_are_config_errors() -> None:
    """Two labels with one variable name, and a vars key that is not a name, are refused."""
    with pytest.raises(ConfigError, match=r"labels 'a\.b' and 'a/b' are both \$\{NODE_LABEL_a_b\}"):
        node_variables("edge-1", {}, {"a.b": "1", "a/b": "2"})
    with pytest.raises(ConfigError, match=r"vars: 'my-var' is not a variable name"):
        node_variables("edge-1", {"my-var": "1"}, {})


def test_variables_from_a_configmap_and_a_secret() -> None:
    """A ConfigMap's data; a Secret's base64 data and its stringData, marked secret; bad keys and base64
    are Problems that do not quote the value."""
    cm, problems = variables_from("ConfigMap", {"data": {"SITE": "berlin", "bad-key": "x"}},
                                  _where(obj="ConfigMap/site"))
    assert cm == {"SITE": Variable("berlin", "ConfigMap site")}
    assert [p.message for p in problems] == ["key 'bad-key' is not a variable name (letters, digits, _)"]
    secret, problems = variables_from("Secret", {"data": {"PW": "aHVudGVyMg==", "RAW": "not base64!",
                                                          "WRAPPED": "aHVu\ndGVy\r\nMg==\n"},  # as in Kubernetes
                                                 "stringData": {"TOKEN": "t0ken-value"}}, _where(obj="Secret/creds"))
    assert secret == {"PW": Variable("hunter2", "Secret creds", True),
                      "WRAPPED": Variable("hunter2", "Secret creds", True),
                      "TOKEN": Variable("t0ken-value", "Secret creds", True)}
    assert [(p.path, p.message) for p in problems] == [("data.RAW", "value is not base64-encoded UTF-8 text")]


def test_secret_variables_only_into_secrets() -> None:
    """A Secret-sourced variable fills a Secret's stringData (kept a string, its value reported for redaction);
    in a Deployment it is a Problem that names the Secret, never the value."""
    variables = {"PW": Variable("hunter2-wifi", "Secret creds", True), "N": Variable("5", "vars of node e")}
    secret = {"kind": "Secret", "metadata": {"name": "wifi", **ON}, "stringData": {"psk": "${PW}", "n": "${N}"}}
    result = substitute(secret, variables, _where(obj="Secret/wifi"))
    assert result.problems == ()
    assert result.body["stringData"] == {"psk": "hunter2-wifi", "n": "5"}
    assert result.secret_values == {"hunter2-wifi"}
    leak = {"kind": "Deployment", "metadata": {"name": "web", **ON}, "spec": {"env": [{"value": "${PW}"}]}}
    result = substitute(leak, variables, _where())
    assert [p.message for p in result.problems] == [
        "a variable from Secret creds may be substituted only into a Secret's data or stringData "
        "(elsewhere diff, status and history would show it)"]
    assert all("hunter2" not in str(p) for p in result.problems)


def test_per_file_opt_in_by_a_leading_comment() -> None:
    """`# gitops-agent.io/substitute: enabled` among the file's opening comments opts in every object of the
    file except one annotated `disabled`; the same line further down is not the marker."""
    assert file_opts_in(b"# site manifests\n#  gitops-agent.io/substitute:   enabled\n\napiVersion: v1\n")
    assert not file_opts_in(b"apiVersion: v1\n# gitops-agent.io/substitute: enabled\n")
    assert not file_opts_in(b"# gitops-agent.io/substitute: disabled\nkind: ConfigMap\n")
    assert not file_opts_in(b"")
    plain = {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"zone": "${Z}"}}
    opted_out = {"kind": "ConfigMap", "metadata": {"name": "b", "annotations": {ANNOTATION: "disabled"}},
                 "data": {"zone": "${Z}"}}
    variables = _vars(Z="north")
    assert substitute(plain, variables, _where(), file_enabled=True).body["data"] == {"zone": "north"}
    assert substitute(plain, variables, _where()).body["data"] == {"zone": "${Z}"}
    assert substitute(opted_out, variables, _where(), file_enabled=True).body is opted_out


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=50, deadline=None)
@given(_TEXT.filter(lambda t: "$" not in t), st.from_regex(NAME, fullmatch=True), _TEXT)
def test_expansion_properties(text: str, name: str, value: str) -> None:
    """Text without `$` is kept; a reference is replaced by its value wherever it sits, and escaped it is kept
    as text; nothing of the value or the text appears in an error."""
    variables = {name: Variable(value, "vars of node n")}
    assert expand(text, variables).text == text
    found = expand(f"{text}${{{name}}}{text}", variables)
    assert (found.text, found.errors, found.used) == (f"{text}{value}{text}", [], [variables[name]])
    assert expand(f"$${{{name}}}", variables).text == f"${{{name}}}"
    missing = expand(f"{text}${{{name}_MISSING}}", variables)
    assert missing.errors == [f"undefined variable {name}_MISSING (no default: set it in the node's vars or labels, "
                              f"substituteFrom, or write ${{{name}_MISSING:=default}})"]


def test_config_vars_and_substitute_from() -> None:
    """A node's `vars:` are kept as text (YAML `true` as "true"); `substituteFrom` entries default to the
    default namespace and required; a vars key that is not a variable name is refused by the schema."""
    raw = {"source": {"url": "/tmp/repo"},
           "nodes": [{"name": "edge-1", "vars": {"REPLICAS": 3, "DEBUG": True, "TAG": "1.10"}}],
           "substituteFrom": [{"kind": "ConfigMap", "name": "site"},
                              {"kind": "Secret", "name": "creds", "namespace": "demo", "optional": True}]}
    cfg = config.from_mapping(raw)
    assert cfg.nodes[0].vars == {"REPLICAS": "3", "DEBUG": "true", "TAG": "1.10"}
    assert cfg.substitute_from == (config.SubstituteFrom("ConfigMap", "site"),
                                   config.SubstituteFrom("Secret", "creds", "demo", True))
    with pytest.raises(ConfigError, match="my-var"):
        config.from_mapping({**raw, "nodes": [{"name": "edge-1", "vars": {"my-var": "x"}}]})
    with pytest.raises(ConfigError, match="kind"):
        config.from_mapping({**raw, "substituteFrom": [{"kind": "Deployment", "name": "x"}]})
