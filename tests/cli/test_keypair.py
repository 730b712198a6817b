"""keypair generate / rotate: keys land in SSM (checked by loading them back), SQL and fingerprints are
printed, and no private key or passphrase material is ever shown."""

from __future__ import annotations

import json
import os
import re
import stat

from snowsage import keys
from snowsage.settings import PLACEHOLDER
from tests.cli.conftest import USER
from tests.cli.secrets_scan import assert_not_shown, key_fragments


def _stored_key(d, passphrase=None):
    pem = d.value("private_key")
    return pem, keys.load_private_key(pem, passphrase)


def test_generate_stores_an_unencrypted_key_and_prints_the_alter(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "keypair", "generate")
    assert r.exit_code == 0, r.stderr
    pem, key = _stored_key(d)
    assert pem.startswith("-----BEGIN " + "PRIVATE KEY-----")  # PKCS#8 (split: no key-like text in the repo)
    assert d.value("private_key_passphrase") == PLACEHOLDER
    meta = d.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [d.parameters["private_key"]]}]
    )["Parameters"][0]
    assert meta["Type"] == "SecureString" and meta["KeyId"] == d.key_arn
    assert f"ALTER USER {USER} SET RSA_PUBLIC_KEY = '{keys.public_key_body(key)}';" in r.stdout
    assert f"RSA_PUBLIC_KEY_FP = {keys.fingerprint(key)}" in r.stdout
    assert d.tags("private_key")["snowsage:rsa-slot"] == "1"
    assert_not_shown(r.everything, *key_fragments(pem))


def test_generate_with_passphrase_encrypts_the_key(deploy, run) -> None:
    d = deploy()
    passphrase = "correct horse battery staple 42"
    r = run(
        "--env", d.env, "keypair", "generate", "--bits", "4096", "--passphrase-stdin", input=passphrase + "\n"
    )
    assert r.exit_code == 0, r.stderr
    assert d.value("private_key_passphrase") == passphrase
    pem, key = _stored_key(d, passphrase)
    assert "ENCRYPTED PRIVATE KEY" in pem and key.key_size == 4096
    assert keys.fingerprint(key) in r.stdout
    assert_not_shown(r.everything, passphrase, *key_fragments(pem, passphrase))


def test_generate_json_reports_the_fingerprint(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "--json", "keypair", "generate")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    pem, key = _stored_key(d)
    assert doc["fingerprint"] == keys.fingerprint(key) and doc["slot"] == 1
    assert_not_shown(r.everything, *key_fragments(pem))


def test_generate_out_writes_a_private_file_and_never_overwrites(deploy, run, tmp_path) -> None:
    d = deploy()
    out = tmp_path / "svc.p8"
    r = run("--env", d.env, "keypair", "generate", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    pem, key = _stored_key(d)
    assert keys.fingerprint(keys.load_private_key(out.read_text())) == keys.fingerprint(key)
    assert_not_shown(r.everything, *key_fragments(pem))

    before = out.read_text()
    r = run("--env", d.env, "keypair", "generate", "--force", "--out", str(out))
    assert r.exit_code == 1 and "already exists" in r.stderr
    assert out.read_text() == before and d.value("private_key") == pem  # nothing replaced anywhere


def test_generate_refuses_to_replace_a_stored_key_without_force(deploy, run) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    pem, key = _stored_key(d)
    r = run("--env", d.env, "keypair", "generate")
    assert r.exit_code == 1
    assert "keypair rotate" in r.stderr and keys.fingerprint(key) in r.stderr
    assert d.value("private_key") == pem
    r = run("--env", d.env, "keypair", "generate", "--force")
    assert r.exit_code == 0 and d.value("private_key") != pem


def test_generate_refuses_other_auth_modes(deploy, run) -> None:
    d = deploy(auth="password")
    r = run("--env", d.env, "keypair", "generate")
    assert r.exit_code == 1 and "auth=password" in r.stderr and "auth=keypair" in r.stderr


def test_generate_refuses_an_empty_passphrase(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "keypair", "generate", "--passphrase-stdin", input="\n")
    assert r.exit_code == 1 and "empty passphrase" in r.stderr
    assert d.value("private_key") == PLACEHOLDER


def _slot_statement(stdout: str) -> tuple[str, str]:
    m = re.search(r"ALTER USER \S+ SET (RSA_PUBLIC_KEY(?:_2)?) = '([A-Za-z0-9+/=]+)';", stdout)
    assert m, stdout
    return m.group(1), m.group(2)


def test_rotation_alternates_slots_and_finishes_with_unset(deploy, run) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    old_pem, old_key = _stored_key(d)

    passphrase = "rotate-me-please"
    r = run("--env", d.env, "keypair", "rotate", "--passphrase-stdin", input=f"{passphrase}\ny\n")
    assert r.exit_code == 0, r.stderr
    new_pem, new_key = _stored_key(d, passphrase)
    column, body = _slot_statement(r.stdout)
    assert column == "RSA_PUBLIC_KEY_2" and body == keys.public_key_body(new_key)
    assert f"RSA_PUBLIC_KEY_2_FP = {keys.fingerprint(new_key)}" in r.stdout
    assert keys.fingerprint(old_key) in r.stderr  # says which key stays live meanwhile
    tags = d.tags("private_key")
    assert tags["snowsage:rsa-slot"] == "2" and tags["snowsage:rsa-retired-slot"] == "1"
    assert_not_shown(r.everything, passphrase, *key_fragments(old_pem), *key_fragments(new_pem, passphrase))

    r = run("--env", d.env, "keypair", "rotate", "--finish")
    assert r.exit_code == 0, r.stderr
    assert f"ALTER USER {USER} UNSET RSA_PUBLIC_KEY;" in r.stdout
    assert keys.fingerprint(old_key) in r.stdout
    r = run("--env", d.env, "keypair", "rotate", "--finish")
    assert r.exit_code == 1 and "no rotation to finish" in r.stderr

    r = run("--env", d.env, "keypair", "rotate", input="y\n")  # and back to slot 1
    assert r.exit_code == 0, r.stderr
    third_pem, third_key = _stored_key(d)
    assert _slot_statement(r.stdout) == ("RSA_PUBLIC_KEY", keys.public_key_body(third_key))
    r = run("--env", d.env, "keypair", "rotate", "--finish")
    assert "UNSET RSA_PUBLIC_KEY_2;" in r.stdout
    assert_not_shown(r.everything, *key_fragments(third_pem))


def test_rotation_cancelled_before_the_admin_ran_it_changes_nothing(deploy, run) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    pem, _ = _stored_key(d)
    r = run("--env", d.env, "keypair", "rotate", input="n\n")
    assert r.exit_code == 1 and "nothing was stored" in r.stderr
    assert d.value("private_key") == pem
    assert d.tags("private_key")["snowsage:rsa-slot"] == "1"
    assert "snowsage:rsa-retired-slot" not in d.tags("private_key")


def test_rotation_without_a_key_says_to_generate(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "keypair", "rotate", "--no-wait")
    assert r.exit_code == 1 and "keypair generate" in r.stderr


def test_rotation_of_a_key_in_an_unknown_slot_says_what_it_assumes(deploy, run, tmp_path) -> None:
    d = deploy()
    path = tmp_path / "own.p8"
    path.write_text(keys.private_key_to_pem(keys.generate_private_key()))
    assert (
        run("--env", d.env, "credentials", "set", "--user", USER, "--private-key-file", str(path)).exit_code
        == 0
    )

    r = run("--env", d.env, "keypair", "rotate", input="n\n")
    assert r.exit_code == 1
    assert "slot is not recorded; assuming RSA_PUBLIC_KEY (pass --live-slot 2 if not)" in r.stderr
    assert _slot_statement(r.stdout)[0] == "RSA_PUBLIC_KEY_2"

    r = run("--env", d.env, "keypair", "rotate", "--live-slot", "2", input="y\n")
    assert r.exit_code == 0, r.stderr
    assert "not recorded" not in r.stderr
    assert _slot_statement(r.stdout) == ("RSA_PUBLIC_KEY", keys.public_key_body(_stored_key(d)[1]))
    tags = d.tags("private_key")
    assert tags["snowsage:rsa-slot"] == "1" and tags["snowsage:rsa-retired-slot"] == "2"
