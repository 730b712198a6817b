"""Credential writes are all or nothing: a key and its passphrase (and the user) only work together,
so a failure at any call leaves the previous set in the parameters, and the error says so."""

from __future__ import annotations

import json

from snowsage import keys
from snowsage.settings import PLACEHOLDER
from tests.cli.conftest import USER
from tests.cli.secrets_scan import assert_not_shown, key_fragments

OLD_PASSPHRASE = "old passphrase 1"
NEW_PASSPHRASE = "new passphrase 2"


def _generate_with_passphrase(d, run):
    r = run("--env", d.env, "keypair", "generate", "--passphrase-stdin", input=OLD_PASSPHRASE + "\n")
    assert r.exit_code == 0, r.stderr
    return d.value("private_key"), d.tags("private_key")


def _sent_values(aws_hooks) -> list[str]:
    return [json.loads(body)["Value"] for body in aws_hooks.sent("ssm.PutParameter")]


def _new_key_fragments(aws_hooks, passphrase: str | None) -> list[str]:
    """Fragments of every PEM the command tried to store (the new key, which it never showed)."""
    pems = [v for v in _sent_values(aws_hooks) if "PRIVATE KEY-----" in v]
    frags: list[str] = []
    for pem in pems:
        try:
            frags += key_fragments(pem, passphrase)
        except keys.PrivateKeyError:  # the old key put back: encrypted with the old passphrase
            frags += key_fragments(pem, OLD_PASSPHRASE)
    return frags


def test_rotate_throttled_between_key_and_passphrase_keeps_the_previous_pair(deploy, run, aws_hooks) -> None:
    d = deploy()
    old_pem, old_tags = _generate_with_passphrase(d, run)
    aws_hooks.fail_calls("ssm.PutParameter", {2})  # the passphrase, after the new key went in

    r = run("--env", d.env, "keypair", "rotate", "--passphrase-stdin", input=f"{NEW_PASSPHRASE}\ny\n")

    assert r.exit_code == 1
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: storing the new private key and passphrase failed at ")
    assert d.parameters["private_key_passphrase"] in error and "ThrottlingException" in error
    assert "wait a minute" in error
    assert f"Put back what was already written ({d.parameters['private_key']})" in error
    assert "the previous private key and passphrase stay in place" in error
    # What the user would notice: the stored pair is the old one and still opens.
    assert d.value("private_key") == old_pem and d.value("private_key_passphrase") == OLD_PASSPHRASE
    keys.load_private_key(d.value("private_key"), d.value("private_key_passphrase"))
    assert d.tags("private_key") == old_tags  # still slot 1, no rotation pending
    assert len(_sent_values(aws_hooks)) == 3  # new key, refused passphrase, old key back
    assert_not_shown(
        r.everything,
        OLD_PASSPHRASE,
        NEW_PASSPHRASE,
        *key_fragments(old_pem, OLD_PASSPHRASE),
        *_new_key_fragments(aws_hooks, NEW_PASSPHRASE),
    )


def test_credentials_set_denied_at_the_user_keeps_the_previous_user_and_key(
    deploy, run, aws_hooks, tmp_path
) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    old_pem = d.value("private_key")
    new_pem = keys.private_key_to_pem(keys.generate_private_key())
    path = tmp_path / "new.p8"
    path.write_text(new_pem)
    # Key first, then the user (the unchanged placeholder passphrase is not rewritten).
    aws_hooks.fail_calls("ssm.PutParameter", {2}, code="AccessDeniedException")

    r = run("--env", d.env, "credentials", "set", "--user", "NEW_SVC", "--private-key-file", str(path))

    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert f"failed at {d.parameters['user']}: access denied for ssm:PutParameter" in r.stderr
    assert "the previous user, private key and passphrase stay in place" in r.stderr
    assert d.value("user") == USER and d.value("private_key") == old_pem
    assert d.value("private_key_passphrase") == PLACEHOLDER
    assert_not_shown(r.everything, *key_fragments(old_pem), *key_fragments(new_pem))


def test_a_failed_tag_update_rolls_the_key_back_too(deploy, run, aws_hooks) -> None:
    d = deploy()
    old_pem, old_tags = _generate_with_passphrase(d, run)
    # Stale tags would send the next rotation into the live key's slot: they belong to the set.
    aws_hooks.fail_calls("ssm.AddTagsToResource", {1})

    r = run("--env", d.env, "keypair", "rotate", "--passphrase-stdin", input=f"{NEW_PASSPHRASE}\ny\n")

    assert r.exit_code == 1
    error = r.stderr.strip().splitlines()[-1]
    assert (
        f"failed at the tags on {d.parameters['private_key']}: AWS throttled ssm:AddTagsToResource" in error
    )
    assert "Put back what was already written" in error and "stay in place" in error
    assert d.value("private_key") == old_pem and d.value("private_key_passphrase") == OLD_PASSPHRASE
    assert d.tags("private_key") == old_tags


def test_generate_refused_at_the_first_write_changes_nothing_and_keeps_no_file(
    deploy, run, aws_hooks, tmp_path
) -> None:
    d = deploy()
    out = tmp_path / "svc.p8"
    aws_hooks.fail_calls("ssm.PutParameter", {1}, code="AccessDeniedException")

    r = run("--env", d.env, "keypair", "generate", "--passphrase-stdin", "--out", str(out), input="pp-x\n")

    assert r.exit_code == 1
    assert "Nothing was written: the previous private key and passphrase stay in place" in r.stderr
    assert d.value("private_key") == PLACEHOLDER and d.value("private_key_passphrase") == PLACEHOLDER
    assert not out.exists()
    assert_not_shown(r.everything, "pp-x", *_new_key_fragments(aws_hooks, "pp-x"))


def test_when_putting_back_fails_too_the_error_says_which_parameter_holds_what(
    deploy, run, aws_hooks
) -> None:
    d = deploy()
    old_pem, _ = _generate_with_passphrase(d, run)
    aws_hooks.fail_calls("ssm.PutParameter", {2, 3})  # the passphrase, then putting the old key back

    r = run("--env", d.env, "keypair", "rotate", "--passphrase-stdin", input=f"{NEW_PASSPHRASE}\ny\n")

    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and r.stderr.strip().endswith(errors[0])  # one line, the last
    error = errors[0]
    assert "Putting the previous values back failed too" in error
    assert f"{d.parameters['private_key']} holds the new value" in error
    assert f"while {d.parameters['private_key_passphrase']} holds the previous one" in error
    assert "do not match" in error and "run the command again" in error
    # ... and that is exactly the state left behind.
    assert d.value("private_key") != old_pem and d.value("private_key_passphrase") == OLD_PASSPHRASE
    assert_not_shown(
        r.everything, OLD_PASSPHRASE, NEW_PASSPHRASE, *_new_key_fragments(aws_hooks, NEW_PASSPHRASE)
    )


def test_replacing_an_unencrypted_key_is_a_single_write(deploy, run, aws_hooks) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    aws_hooks.fail_calls("ssm.PutParameter", {2})  # a second write would fail: there is none

    r = run("--env", d.env, "keypair", "generate", "--force")

    assert r.exit_code == 0, r.stderr
    assert len(_sent_values(aws_hooks)) == 1
    keys.load_private_key(d.value("private_key"))
