"""credentials set validates before writing anything; credentials status never shows a value."""

from __future__ import annotations

import json

import pytest

from snowsage import keys
from snowsage.ops import secret_input
from snowsage.settings import PLACEHOLDER
from tests.cli.conftest import USER
from tests.cli.secrets_scan import assert_not_shown, key_fragments


def set_key(run, d, user, path, *args, input=None):
    """`credentials set --user USER --private-key-file PATH [args]`."""
    return run(
        "--env",
        d.env,
        "credentials",
        "set",
        "--user",
        user,
        "--private-key-file",
        str(path),
        *args,
        input=input,
    )


@pytest.fixture
def key_file(tmp_path):
    def _make(passphrase=None, bits=2048):
        key = keys.generate_private_key(bits)
        pem = keys.private_key_to_pem(key, passphrase)
        path = tmp_path / ("enc.pem" if passphrase else "plain.pem")
        path.write_text(pem)
        return path, pem, key

    return _make


def test_set_stores_a_key_file_and_user(deploy, run, key_file) -> None:
    d = deploy()
    path, pem, key = key_file()
    r = set_key(run, d, "NEW_SVC", path)
    assert r.exit_code == 0, r.stderr
    assert d.value("user") == "NEW_SVC"
    assert keys.fingerprint(keys.load_private_key(d.value("private_key"))) == keys.fingerprint(key)
    assert d.value("private_key_passphrase") == PLACEHOLDER
    assert keys.fingerprint(key) in r.stdout
    assert_not_shown(r.everything, *key_fragments(pem))


def test_sql_follows_the_user_set_with_credentials_set(deploy, run, key_file) -> None:
    d = deploy()
    path, _, _ = key_file()
    assert set_key(run, d, "RENAMED_SVC", path).exit_code == 0
    r = run("--env", d.env, "keypair", "generate", "--force")
    assert r.exit_code == 0, r.stderr
    assert "ALTER USER RENAMED_SVC SET RSA_PUBLIC_KEY" in r.stdout


def test_set_encrypted_key_with_passphrase_on_stdin(deploy, run, key_file) -> None:
    d = deploy()
    passphrase = "s3cret passphrase!"
    path, pem, key = key_file(passphrase)
    r = set_key(run, d, USER, path, "--passphrase-stdin", input=passphrase + "\n")
    assert r.exit_code == 0, r.stderr
    assert d.value("private_key_passphrase") == passphrase
    stored = keys.load_private_key(d.value("private_key"), passphrase)
    assert keys.fingerprint(stored) == keys.fingerprint(key)
    assert_not_shown(r.everything, passphrase, *key_fragments(pem, passphrase))


def test_set_encrypted_key_asks_for_the_passphrase_without_echo(deploy, run, key_file, monkeypatch) -> None:
    monkeypatch.setattr(secret_input, "stdin_is_terminal", lambda: True)  # CliRunner's stdin is a pipe
    d = deploy()
    passphrase = "prompted-passphrase-77"
    path, pem, key = key_file(passphrase)
    r = set_key(run, d, USER, path, input=passphrase + "\n")
    assert r.exit_code == 0, r.stderr
    assert "Passphrase for" in r.stderr
    assert d.value("private_key_passphrase") == passphrase
    stored = keys.load_private_key(d.value("private_key"), passphrase)
    assert keys.fingerprint(stored) == keys.fingerprint(key)
    assert_not_shown(r.everything, passphrase, *key_fragments(pem, passphrase))


def test_wrong_passphrase_is_refused_and_nothing_written(deploy, run, key_file) -> None:
    d = deploy()
    path, pem, _ = key_file("the-right-one")
    r = set_key(run, d, "NEW_SVC", path, "--passphrase-stdin", input="the-wrong-one\n")
    assert r.exit_code == 1
    assert "passphrase does not open" in r.stderr and "Traceback" not in r.everything
    assert len(r.stderr.strip().splitlines()) == 1
    assert d.value("user") == USER and d.value("private_key") == PLACEHOLDER
    assert_not_shown(r.everything, "the-wrong-one", "the-right-one", *key_fragments(pem, "the-right-one"))


def test_a_file_that_is_not_a_private_key_is_refused(deploy, run, key_file, tmp_path) -> None:
    d = deploy()
    _, _, key = key_file()
    from cryptography.hazmat.primitives import serialization

    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    r = set_key(run, d, USER, public)
    assert r.exit_code == 1
    assert "not a PEM private key" in r.stderr and str(public) in r.stderr
    assert d.value("private_key") == PLACEHOLDER


def test_set_password_from_stdin(deploy, run) -> None:
    d = deploy(auth="password")
    password = "Pa55-word-for-snowflake"
    r = run(
        "--env", d.env, "credentials", "set", "--user", "PW_SVC", "--password-stdin", input=password + "\n"
    )
    assert r.exit_code == 0, r.stderr
    assert d.value("password") == password and d.value("user") == "PW_SVC"
    assert_not_shown(r.everything, password)


def test_empty_password_is_refused(deploy, run) -> None:
    d = deploy(auth="password")
    r = run("--env", d.env, "credentials", "set", "--user", "PW_SVC", "--password-stdin", input="\n")
    assert r.exit_code == 1 and "empty password" in r.stderr
    assert d.value("password") == PLACEHOLDER and d.value("user") == USER


def test_secret_kind_must_match_auth_mode(deploy, run, key_file) -> None:
    d = deploy(auth="password")
    path, _, _ = key_file()
    r = set_key(run, d, USER, path)
    assert r.exit_code == 1 and "auth=keypair" in r.stderr
    assert d.value("user") == USER


def test_status_shows_state_never_values(deploy, run) -> None:
    d = deploy(auth="password")
    r = run("--env", d.env, "credentials", "status")
    assert r.exit_code == 1  # password still the placeholder
    assert "placeholder" in r.stdout and d.parameters["password"] in r.stdout
    password = "status-must-not-show-this"
    d.put("password", password)
    r = run("--env", d.env, "--json", "credentials", "status")
    assert r.exit_code == 0, r.stdout
    doc = json.loads(r.stdout)
    states = {row["key"]: row for row in doc["parameters"]}
    assert states["password"]["state"] == "set" and states["password"]["last_modified"]
    assert states["user"]["state"] == "set"
    assert_not_shown(r.everything, password, USER)


def test_status_shows_key_fingerprint_and_slot(deploy, run) -> None:
    d = deploy()
    assert run("--env", d.env, "keypair", "generate").exit_code == 0
    pem = d.value("private_key")
    r = run("--env", d.env, "credentials", "status")
    assert r.exit_code == 0, r.stdout
    assert keys.fingerprint(keys.load_private_key(pem)) in r.stdout and "RSA_PUBLIC_KEY" in r.stdout
    assert_not_shown(r.everything, *key_fragments(pem))


def test_status_reports_a_key_that_does_not_load(deploy, run) -> None:
    d = deploy()
    d.put("private_key", keys.private_key_to_pem(keys.generate_private_key(), "pp-one"))
    d.put("private_key_passphrase", "pp-two")
    r = run("--env", d.env, "credentials", "status")
    assert r.exit_code == 1 and "does not load" in r.stdout
    assert_not_shown(r.everything, "pp-one", "pp-two")


def test_a_key_under_2048_bits_is_refused_before_anything_is_written(deploy, run, tmp_path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    d = deploy()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    path = tmp_path / "weak.pem"
    path.write_text(keys.private_key_to_pem(weak))
    r = set_key(run, d, "NEW_SVC", path)
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert str(path) in r.stderr and "1024-bit RSA" in r.stderr and "at least 2048 bits" in r.stderr
    assert "snowsage keypair generate" in r.stderr
    assert d.value("private_key") == PLACEHOLDER and d.value("user") == USER
    assert_not_shown(r.everything, *key_fragments(path.read_text()))


def test_a_passphrase_that_is_not_utf8_is_one_clear_error(deploy, run, key_file) -> None:
    d = deploy()
    path, pem, _ = key_file("the-right-one")
    r = set_key(run, d, "NEW_SVC", path, "--passphrase-stdin", input=b"caf\xe9-latin1\n")
    assert r.exit_code == 1 and "Traceback" not in r.everything
    assert len(r.stderr.strip().splitlines()) == 1
    assert "passphrase read by --passphrase-stdin is not UTF-8 text" in r.stderr
    assert d.value("private_key") == PLACEHOLDER and d.value("user") == USER
    assert_not_shown(r.everything, "latin1", *key_fragments(pem, "the-right-one"))


def test_an_encrypted_key_without_a_terminal_names_passphrase_stdin(deploy, run, key_file) -> None:
    d = deploy()
    path, _, _ = key_file("needs-a-passphrase")
    r = set_key(run, d, "NEW_SVC", path, input="")
    assert r.exit_code == 1
    assert "Aborted" not in r.everything
    assert r.stderr.strip().splitlines() == [
        f"Error: {path} is encrypted and there is no terminal to ask for its passphrase; pipe the "
        "passphrase in with --passphrase-stdin"
    ]
    assert d.value("private_key") == PLACEHOLDER and d.value("user") == USER
