"""Agent helpers: the tfvars file, the job's environment, the CLI configuration and the plan summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outpost.agent.job import _APPLY_SUMMARY, _PLAN_SUMMARY, summarize_plan, summary_counts
from outpost.agent.terraform import BASE_PATH, PASSTHROUGH, job_environment, tfvars


def var(key: str, value: str, *, hcl: bool = False, category: str = "terraform") -> dict[str, Any]:
    return {"key": key, "value": value, "category": category, "hcl": hcl, "sensitive": False}


# --- tfvars ---------------------------------------------------------------------------------------


def test_tfvars_escapes_template_sequences_in_strings() -> None:
    out = tfvars([var("a", '${file("/etc/passwd")}'), var("b", "%{ if true }x%{ endif }")])
    assert out.splitlines() == [
        'a = "$${file(\\"/etc/passwd\\")}"',
        'b = "%%{ if true }x%%{ endif }"',
    ]
    assert out.endswith("\n")


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain", 'k = "plain"'),
        ("", 'k = ""'),
        ("cost: $5 and 50%", 'k = "cost: $5 and 50%"'),
        ("{not a template}", 'k = "{not a template}"'),
        # Like hclwrite: only the `$` right before `{` is doubled; HCL reads `$$${` back as `$${`.
        ("$${already}", 'k = "$$${already}"'),
        ("50%%{x}", 'k = "50%%%{x}"'),
        ('a\nb\t"c"\\', 'k = "a\\nb\\t\\"c\\"\\\\"'),
        ("${a}${b}%{c}", 'k = "$${a}$${b}%%{c}"'),
    ],
)
def test_tfvars_string_values(value: str, line: str) -> None:
    assert tfvars([var("k", value)]) == line + "\n"


def test_tfvars_hcl_values_are_verbatim_and_env_vars_ignored() -> None:
    hcl = '{ name = "${var.prefix}-x", tags = ["a", "b"] }'
    out = tfvars(
        [
            var("obj", hcl, hcl=True),
            var("TF_LOG", "${not here}", category="env"),
            var("AWS_SECRET", "s3cr3t", category="env", hcl=True),
            var("n", "3", hcl=True),
        ]
    )
    assert out == f"obj = {hcl}\nn = 3\n"
    assert "TF_LOG" not in out
    assert "s3cr3t" not in out


def test_tfvars_of_nothing_is_an_empty_file() -> None:
    assert tfvars([]).strip() == ""
    assert tfvars([var("E", "x", category="env")]).strip() == ""


def test_tfvars_string_values_stay_valid_json_strings() -> None:
    """Apart from the doubled `$` and `%`, the value is a JSON string (whose escapes HCL shares)."""
    value = 'unicode é ☃ "quoted" \\ back ${x} %{y}'
    line = tfvars([var("k", value)]).rstrip("\n")
    key, _, literal = line.partition(" = ")
    assert key == "k"
    assert json.loads(literal.replace("$${", "${").replace("%%{", "%{")) == value


# --- job environment --------------------------------------------------------------------------------


def test_job_environment_is_clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUTPOST_AGENT_TOKEN", "opa_secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "host-key")
    monkeypatch.setenv("HTTPS_PROXY", "http://host-proxy:3128")
    home, tmp, cfg = tmp_path / "home", tmp_path / "tmp", tmp_path / "cli.tfrc"
    env = job_environment(
        home=home,
        tmp=tmp,
        cli_config_file=cfg,
        workspace_env={"TF_LOG": "DEBUG", "OUTPOST_AGENT_TOKEN": "stolen?", "OUTPOST_X": "1", "AWS_REGION": "eu"},
        passthrough={
            "HTTPS_PROXY": "http://proxy:3128",
            "NO_PROXY": "localhost",
            "SSL_CERT_FILE": "/etc/ca.pem",
            "AWS_ACCESS_KEY_ID": "leak",
            "OUTPOST_AGENT_TOKEN": "leak",
            "PATH": "/evil",
        },
    )
    assert env["HOME"] == str(home)
    assert env["TMPDIR"] == str(tmp)
    assert env["TF_CLI_CONFIG_FILE"] == str(cfg)
    assert env["PATH"] == BASE_PATH
    assert env["TF_IN_AUTOMATION"] == "1"
    assert env["TF_INPUT"] == "0"
    # The operator's allow-listed settings pass; nothing else from the host.
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["NO_PROXY"] == "localhost"
    assert env["SSL_CERT_FILE"] == "/etc/ca.pem"
    assert "AWS_ACCESS_KEY_ID" not in env
    # The workspace's env vars, except the agent's own namespace.
    assert env["TF_LOG"] == "DEBUG"
    assert env["AWS_REGION"] == "eu"
    assert not [k for k in env if k.startswith("OUTPOST_")]
    assert "opa_secret" not in env.values()
    assert "leak" not in env.values()
    expected = {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "TF_IN_AUTOMATION",
        "TF_INPUT",
        "CHECKPOINT_DISABLE",
        "TF_CLI_CONFIG_FILE",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "TF_LOG",
        "AWS_REGION",
    }
    assert set(env) == expected


def test_job_environment_passthrough_allow_list(tmp_path: Path) -> None:
    passthrough = {name: f"value-of-{name}" for name in PASSTHROUGH}
    env = job_environment(
        home=tmp_path, tmp=tmp_path, cli_config_file=tmp_path / "c", workspace_env={}, passthrough=passthrough
    )
    for name in PASSTHROUGH:
        assert env[name] == f"value-of-{name}"
    bare = job_environment(
        home=tmp_path, tmp=tmp_path, cli_config_file=tmp_path / "c", workspace_env={}, passthrough={}
    )
    assert not set(PASSTHROUGH) & set(bare), "proxy settings appear only when the operator set them"


# --- plan summary ----------------------------------------------------------------------------------


def rc(address: str, *actions: str) -> dict[str, Any]:
    return {"address": address, "mode": "managed", "type": "null_resource", "change": {"actions": list(actions)}}


def test_summarize_plan_counts_each_kind_of_change() -> None:
    plan = {
        "format_version": "1.2",
        "resource_changes": [
            rc("null_resource.new", "create"),
            rc("null_resource.new2", "create"),
            rc("null_resource.gone", "delete"),
            rc("null_resource.edit", "update"),
            rc("null_resource.swap", "delete", "create"),
            rc("null_resource.swap_cbd", "create", "delete"),
            rc("null_resource.same", "no-op"),
            rc("data.null_data_source.read", "read"),
        ],
        "output_changes": {"x": {"actions": ["no-op"], "before": 1, "after": 1}},
    }
    assert summarize_plan(plan) == {"has_changes": True, "additions": 4, "changes": 1, "destructions": 3}


def test_replace_counts_as_both_create_and_delete() -> None:
    summary = summarize_plan({"resource_changes": [rc("null_resource.r", "delete", "create")]})
    assert summary == {"has_changes": True, "additions": 1, "changes": 0, "destructions": 1}


def test_update_alone() -> None:
    summary = summarize_plan({"resource_changes": [rc("null_resource.r", "update")]})
    assert summary == {"has_changes": True, "additions": 0, "changes": 1, "destructions": 0}


def test_output_only_change_has_changes() -> None:
    plan = {
        "resource_changes": [rc("null_resource.r", "no-op")],
        "output_changes": {
            "same": {"actions": ["no-op"], "before": "a", "after": "a"},
            "new": {"actions": ["create"], "before": None, "after": "b"},
        },
    }
    assert summarize_plan(plan) == {"has_changes": True, "additions": 0, "changes": 0, "destructions": 0}
    plan["output_changes"] = {"edited": {"actions": ["update"], "before": "a", "after": "c"}}
    assert summarize_plan(plan)["has_changes"] is True


@pytest.mark.parametrize(
    "plan",
    [
        {},
        {"resource_changes": None, "output_changes": None},
        {"resource_changes": []},
        {"resource_changes": [rc("null_resource.r", "no-op"), rc("data.x.y", "read")]},
        {"resource_changes": [rc("null_resource.r", "no-op")], "output_changes": {"o": {"actions": ["no-op"]}}},
    ],
)
def test_no_op_plan_has_no_changes(plan: dict[str, Any]) -> None:
    assert summarize_plan(plan) == {"has_changes": False, "additions": 0, "changes": 0, "destructions": 0}


# --- summary lines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "counts"),
    [
        (b"Plan: 3 to add, 0 to change, 0 to destroy.\n", {"additions": 3, "changes": 0, "destructions": 0}),
        # 1.5 and later count imports first
        (
            b"Plan: 1 to import, 2 to add, 1 to change, 4 to destroy.\n",
            {"additions": 2, "changes": 1, "destructions": 4},
        ),
        # a value in the plan that reads like a summary comes before the real one
        (
            b'  + triggers = { "x" = "9 to add, 9 to change, 9 to destroy." }\n\nPlan: 1 to add, 0 to change, 0 to destroy.\n',
            {"additions": 1, "changes": 0, "destructions": 0},
        ),
        (b"Changes to Outputs:\n  + x = 1\n", {}),  # outputs only: no summary line
    ],
)
def test_plan_summary_counts(output: bytes, counts: dict[str, int]) -> None:
    assert summary_counts(_PLAN_SUMMARY, output) == counts


def test_apply_summary_counts() -> None:
    output = b"null_resource.r: Creation complete\n\nApply complete! Resources: 2 added, 1 changed, 0 destroyed.\n"
    assert summary_counts(_APPLY_SUMMARY, output) == {"additions": 2, "changes": 1, "destructions": 0}
