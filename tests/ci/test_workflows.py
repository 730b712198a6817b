"""The GitHub Actions workflows (.github/workflows) and the OIDC role the deploy assumes
(docs/github-oidc-role.yaml): what a reviewer checks, asserted on the files; the two linters of
`make lint` clean on them and failing, with the finding named, on a workflow that is not."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode_str

from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ROLE_TEMPLATE = REPO_ROOT / "docs" / "github-oidc-role.yaml"
BIN = Path(sys.executable).parent
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
# The two workflow gates exactly as the Makefile's lint target runs them (asserted below).
ACTIONLINT = ["actionlint", "-shellcheck=$(BIN)/shellcheck"]
ZIZMOR = ["zizmor", "--offline", "--strict-collection", "--persona", "pedantic", "--no-progress"]
# `uses: owner/repo[/path]@<commit> # vX.Y.Z`: a commit cannot move the way a tag can.
PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")


def _workflow(name: str) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    return {("on" if key is True else key): value for key, value in raw.items()}


def _steps(name: str, job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow(name)["jobs"][job]["steps"]
    return steps


def _step_using(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    found = [s for s in steps if s.get("uses", "").startswith(f"{action}@")]
    assert len(found) == 1, f"expected one step using {action}, found {len(found)}"
    return found[0]


def _index(steps: list[dict[str, Any]], predicate: Any) -> int:
    matches = [i for i, s in enumerate(steps) if predicate(s)]
    assert len(matches) == 1, matches
    return matches[0]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("$(BIN)", str(BIN)) for a in cmd]
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=cwd)


ALL_WORKFLOWS = sorted(p.name for p in WORKFLOWS.glob("*.y*ml"))


def test_the_workflows_are_found() -> None:
    assert {"ci.yml", "deploy.yml"} <= set(ALL_WORKFLOWS)


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_every_action_is_pinned_to_a_commit_with_its_version(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    lines = [line for line in text.splitlines() if re.match(r"^\s*(- )?uses:", line)]
    parsed = [s["uses"] for job in _workflow(name)["jobs"].values() for s in job["steps"] if "uses" in s]
    assert len(lines) == len(parsed) > 0
    unpinned = [line.strip() for line in lines if not PINNED.match(line)]
    assert unpinned == [], f"pin each action to a 40-hex commit with '# vX.Y.Z' after it: {unpinned}"


def test_an_action_is_pinned_to_the_same_commit_in_both_workflows() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for name in ALL_WORKFLOWS:
        for line in (WORKFLOWS / name).read_text().splitlines():
            if m := PINNED.match(line):
                pins.setdefault(m[1], set()).add((m[2], m[3]))
    assert {action: len(v) for action, v in pins.items() if len(v) > 1} == {}


def test_ci_runs_make_test_on_every_pull_request_and_push_to_main() -> None:
    ci = _workflow("ci.yml")
    assert "pull_request" in ci["on"] and ci["on"]["pull_request"] is None  # every branch
    assert ci["on"]["push"] == {"branches": ["main"]}
    steps = _steps("ci.yml", "test")
    test = steps[_index(steps, lambda s: "make test" in s.get("run", ""))]
    assert test["run"].strip().splitlines()[-1] == "make test"
    # The browser test uses the runner image's Chrome and its matching driver, not apt packages.
    assert test["env"]["SNOWSAGE_BROWSER"] == "/usr/bin/google-chrome"
    assert 'SNOWSAGE_CHROMEDRIVER="${CHROMEWEBDRIVER}/chromedriver"' in test["run"]
    assert "apt-get" not in (WORKFLOWS / "ci.yml").read_text()


def test_tokens_are_least_privilege_and_only_the_deploy_job_gets_an_id_token() -> None:
    ci, deploy = _workflow("ci.yml"), _workflow("deploy.yml")
    assert ci["permissions"] == {} and deploy["permissions"] == {}
    assert {name: job["permissions"] for name, job in ci["jobs"].items()} == {"test": {"contents": "read"}}
    assert {name: job["permissions"] for name, job in deploy["jobs"].items()} == {
        "deploy": {"contents": "read", "id-token": "write"}
    }


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_no_stored_keys_and_checkout_keeps_no_token(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert "secrets." not in text and "AWS_SECRET_ACCESS_KEY" not in text and "aws-access-key-id" not in text
    for job in _workflow(name)["jobs"].values():
        checkout = _step_using(job["steps"], "actions/checkout")
        assert checkout["with"]["persist-credentials"] is False


def test_deploy_assumes_the_oidc_role_from_variables_after_installing() -> None:
    steps = _steps("deploy.yml", "deploy")
    creds = _step_using(steps, "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert creds["with"]["aws-region"] == "${{ vars.AWS_REGION }}"
    assert creds["with"]["allowed-account-ids"] == "${{ steps.settings.outputs.account }}"
    # Nothing installed runs with the credentials: they come after `make install`.
    assert _index(steps, lambda s: s.get("run") == "make install") < steps.index(creds)


def test_deploy_diffs_before_it_deploys_and_stops_on_broadening_unless_approved() -> None:
    steps = _steps("deploy.yml", "deploy")
    creds = steps.index(_step_using(steps, "aws-actions/configure-aws-credentials"))
    diff = _index(steps, lambda s: "cdk diff" in s.get("run", ""))
    deploy = _index(steps, lambda s: "cdk deploy" in s.get("run", ""))
    assert creds < diff < deploy == len(steps) - 1
    assert 'npx --no-install cdk diff "${context[@]}"' in steps[diff]["run"]  # no names: every stack
    command = steps[deploy]["run"]
    assert 'npx --no-install cdk deploy --all --require-approval "${REQUIRE_APPROVAL}"' in command
    # --yes would answer the broadening prompt itself.
    assert "--yes" not in command and " -y" not in command
    approval = steps[deploy]["env"]["REQUIRE_APPROVAL"]
    assert approval == "${{ inputs.approve-broadening && 'never' || 'broadening' }}"
    dispatch = _workflow("deploy.yml")["on"]["workflow_dispatch"]["inputs"]["approve-broadening"]
    assert dispatch["type"] == "boolean" and dispatch["default"] is False
    # The same context for both: the account of the role, the region and env name of the variables.
    assert steps[diff]["run"].splitlines()[:2] == command.splitlines()[:2]
    assert steps[diff]["env"] == {"ACCOUNT": steps[deploy]["env"]["ACCOUNT"]}


def test_deploy_runs_from_main_in_the_protected_environment_one_at_a_time() -> None:
    deploy = _workflow("deploy.yml")
    job = deploy["jobs"]["deploy"]
    assert job["environment"] == "production"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    assert deploy["on"]["push"] == {"branches": ["main"]}
    assert deploy["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}


def test_ci_caches_pip_and_npm_and_deploy_installs_without_caches() -> None:
    ci = _steps("ci.yml", "test")
    python = _step_using(ci, "actions/setup-python")["with"]
    node = _step_using(ci, "actions/setup-node")["with"]
    assert python["python-version"] == "3.11" and python["cache"] == "pip"
    assert python["cache-dependency-path"].split() == ["requirements.txt", "requirements-checkov.txt"]
    assert node["node-version"] == "22" and node["cache"] == "npm"
    assert node["cache-dependency-path"] == "package-lock.json"
    deploy = _steps("deploy.yml", "deploy")
    assert "cache" not in _step_using(deploy, "actions/setup-python")["with"]
    node = _step_using(deploy, "actions/setup-node")["with"]
    assert "cache" not in node and node["package-manager-cache"] is False


def test_ci_uploads_the_synthesized_cdk_out() -> None:
    steps = _steps("ci.yml", "test")
    synth = _index(steps, lambda s: s.get("run") == "make synth")
    upload = _step_using(steps, "actions/upload-artifact")
    assert synth < steps.index(upload) == len(steps) - 1
    assert upload["with"]["path"] == "cdk.out/"
    assert upload["with"]["if-no-files-found"] == "error"


def test_deploy_refuses_missing_settings_with_one_line_each(tmp_path: Path) -> None:
    """The settings step as the runner runs a `run:` block, with the variables unset or wrong."""
    settings = _steps("deploy.yml", "deploy")[0]
    assert settings["id"] == "settings"
    script = tmp_path / "settings.sh"
    script.write_text(settings["run"])
    out = tmp_path / "output"

    def run(role: str, region: str) -> subprocess.CompletedProcess[str]:
        env = {"AWS_DEPLOY_ROLE_ARN": role, "DEPLOY_REGION": region, "GITHUB_OUTPUT": str(out)}
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            capture_output=True,
            text=True,
            env=env,
        )

    bad = run("", "us-east-1 ")
    assert bad.returncode == 1
    errors = bad.stdout.splitlines()
    assert len(errors) == 2 and all(line.startswith("::error::variable ") for line in errors)
    assert "AWS_DEPLOY_ROLE_ARN is ''" in errors[0] and "AWS_REGION is 'us-east-1 '" in errors[1]
    assert not out.exists()
    good = run("arn:aws:iam::123456789012:role/snowsage-github-deploy", "eu-west-1")
    assert good.returncode == 0, good.stdout + good.stderr
    assert out.read_text() == "account=123456789012\n"


def test_the_settings_the_deploy_reads_are_documented() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    variables = set(re.findall(r"\bvars\.([A-Z_]+)", text))
    assert variables == {"AWS_DEPLOY_ROLE_ARN", "AWS_REGION", "SNOWSAGE_ENV_NAME"}
    docs = (REPO_ROOT / "docs" / "ci.md").read_text()
    assert [v for v in sorted(variables) if f"`{v}`" not in docs] == []


# The gates themselves.


def test_make_lint_runs_both_workflow_linters() -> None:
    recipe = (REPO_ROOT / "Makefile").read_text().split("\nlint: install\n", 1)[1].split("\n\n", 1)[0]
    assert f"\t$(BIN)/{' '.join(ACTIONLINT)}" in recipe.splitlines()
    assert f"\t$(BIN)/{' '.join(ZIZMOR)} .github" in recipe.splitlines()


def test_actionlint_and_zizmor_are_clean_on_the_workflows() -> None:
    actionlint = _run(ACTIONLINT, REPO_ROOT)
    assert actionlint.returncode == 0, actionlint.stdout + actionlint.stderr
    zizmor = _run([*ZIZMOR, ".github"], REPO_ROOT)
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr
    assert "No findings" in zizmor.stdout
    for name in ("dependabot.yml", "workflows/ci.yml", "workflows/deploy.yml"):
        assert f"completed .github/{name}" in zizmor.stderr, name


def test_actionlint_and_zizmor_fail_on_a_bad_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: pull_request_target\n"
        "permissions: write-all\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    needs: lint\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    (tmp_path / ".github" / "dependabot.yml").write_text(
        "version: 2\nupdates:\n  - package-ecosystem: github-actions\n    directory: /\n"
        "    schedule:\n      interval: daily\n"
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)  # actionlint finds the project by it
    actionlint = _run(ACTIONLINT, tmp_path)
    assert actionlint.returncode == 1, actionlint.stdout + actionlint.stderr
    assert 'job "build" needs job "lint" which does not exist' in actionlint.stdout
    assert '"github.event.pull_request.title" is potentially untrusted' in actionlint.stdout
    zizmor = _run([*ZIZMOR, "--color", "never", ".github"], tmp_path)
    assert zizmor.returncode != 0, zizmor.stdout + zizmor.stderr
    audits = (
        "template-injection",
        "unpinned-uses",
        "dangerous-triggers",
        "artipacked",
        "dependabot-cooldown",
    )
    for audit in audits:
        assert f"[{audit}]" in zizmor.stdout, audit


def test_zizmor_fails_on_a_workflow_it_cannot_read_instead_of_skipping_it(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text((WORKFLOWS / "ci.yml").read_text())
    (workflows / "broken.yml").write_text("on: push\njobs:\n  build:\n    steps: not-a-list\n")
    lenient = [a for a in ZIZMOR if a != "--strict-collection"]
    assert _run([*lenient, ".github"], tmp_path).returncode == 0  # why the Makefile passes the flag
    zizmor = _run([*ZIZMOR, "--color", "never", ".github"], tmp_path)
    assert zizmor.returncode != 0
    assert "failed to load file://.github/workflows/broken.yml" in zizmor.stdout + zizmor.stderr


# The OIDC role, deployed once by the user (docs/ci.md).


def role_template() -> dict[str, Any]:
    template, problems = decode_str(ROLE_TEMPLATE.read_text())
    assert problems == []
    return json.loads(json.dumps(template))  # plain dicts


def test_oidc_role_template_passes_cfn_lint() -> None:
    proc = subprocess.run([str(BIN / "cfn-lint"), str(ROLE_TEMPLATE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.infra  # a template gate like tests/infra/test_gates.py; checkov takes seconds to start
@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing: run `make install`")
def test_oidc_role_template_passes_checkov() -> None:
    options = ["--framework", "cloudformation", "--compact", "--quiet", "--skip-download", "-o", "json"]
    proc = subprocess.run([str(CHECKOV), "-f", str(ROLE_TEMPLATE), *options], capture_output=True, text=True)
    summary = json.loads(proc.stdout)["summary"]
    assert (summary["failed"], summary["parsing_errors"], summary["resource_count"]) == (0, 0, 2)


def test_oidc_role_trusts_one_environment_of_one_repository_only() -> None:
    role = role_template()["Resources"]["DeployRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    # Exact matches only: no StringLike, so no wildcard branch, repository or environment.
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": {
                "Fn::Sub": "repo:${Repository}:environment:${EnvironmentName}"
            },
        }
    }
    assert role["MaxSessionDuration"] == 3600


def test_oidc_role_can_only_assume_the_cdk_bootstrap_roles_of_its_account() -> None:
    role = role_template()["Resources"]["DeployRole"]["Properties"]
    assert "ManagedPolicyArns" not in role and "PermissionsBoundary" not in role
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and sorted(statement["Action"]) == [
        "sts:AssumeRole",
        "sts:TagSession",
    ]
    prefix = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-${CdkQualifier}-"
    resources = sorted(r["Fn::Sub"] for r in statement["Resource"])
    assert resources == [
        f"{prefix}{kind}-role-${{AWS::AccountId}}-*"
        for kind in ("deploy", "file-publishing", "image-publishing", "lookup")
    ]
    # Not the CloudFormation execution role (administrator by default).
    assert not any("cfn-exec" in r for r in resources)


@pytest.mark.parametrize(
    ("repository", "accepted"),
    [
        ("octo-org/octo-repo", True),
        ("octo-org@123456/octo-repo@789012", True),
        ("octo-org/*", False),
        ("octo-org", False),
        ("octo-org/octo-repo:ref:refs/heads/main", False),
    ],
)
def test_oidc_role_refuses_a_repository_that_is_not_one_exact_name(repository: str, accepted: bool) -> None:
    pattern = role_template()["Parameters"]["Repository"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, repository)) is accepted
