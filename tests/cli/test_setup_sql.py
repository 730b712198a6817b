"""The SQL builders quote what must be quoted and refuse what cannot be put into a statement."""

import pytest

from snowsage import setup_sql as sql


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SNOWSAGE_SVC", "SNOWSAGE_SVC"),
        ("svc$1", "svc$1"),
        ("my-db", '"my-db"'),
        ('we"ird', '"we""ird"'),
        ("1st", '"1st"'),
    ],
)
def test_identifiers_are_bare_only_when_unambiguous(name: str, expected: str) -> None:
    assert sql.identifier(name, "database") == expected


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 256])
def test_unusable_identifiers_are_refused_naming_what(bad: str) -> None:
    with pytest.raises(sql.SqlValueError, match="database"):
        sql.identifier(bad, "database")


def test_literals_cannot_break_out_of_quotes() -> None:
    assert sql.literal("it's") == "'it''s'"
    assert sql.literal("a\\' OR 1=1") == "'a\\\\'' OR 1=1'"


def test_role_arn_must_be_an_iam_role() -> None:
    sql.role_arn("arn:aws:iam::123456789012:role/x-y", "notebook role ARN")
    with pytest.raises(sql.SqlValueError, match="notebook role ARN"):
        sql.role_arn("arn:aws:iam::123456789012:user/bob", "notebook role ARN")


def test_nat_ip_list_rejects_garbage() -> None:
    assert sql.parse_ipv4_list(" 203.0.113.1, ,198.51.100.2") == ["203.0.113.1", "198.51.100.2"]
    assert sql.parse_ipv4_list("") == []
    with pytest.raises(sql.SqlValueError, match="NatElasticIps"):
        sql.parse_ipv4_list("203.0.113.1,evil')")


def test_vpce_ids_are_validated() -> None:
    with pytest.raises(sql.SqlValueError, match="VPC endpoint"):
        sql.network_policy_sql(
            user="U",
            rule_database="D",
            rule_schema="S",
            rule_name="R",
            policy_name="P",
            vpce_ids=["vpce-1'); DROP"],
        )
