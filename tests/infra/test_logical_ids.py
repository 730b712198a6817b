"""Stateful resources keep their logical IDs: a changed ID makes CloudFormation replace the
resource, and the notebook volume, key, bucket or credentials would be lost."""

from __future__ import annotations

from .conftest import Synth

STABLE = {
    "data": {
        "EncryptionKey3A692D6E": "AWS::KMS::Key",
        "ResultsBucket46167C27": "AWS::S3::Bucket",
        "ResultsAccessLogs10A17094": "AWS::S3::Bucket",
        "SnowflakeSecretuser95255862": "Custom::SnowsageSecureParameter",
        "SnowflakeSecretprivatekey416EE65A": "Custom::SnowsageSecureParameter",
        "SnowflakeSecretprivatekeypassphrase559E55CC": "Custom::SnowsageSecureParameter",
        "SnowflakeSettingaccount974A60C8": "AWS::SSM::Parameter",
    },
    "notebook": {
        "NotebookInstance0476B99B": "AWS::SageMaker::NotebookInstance",
        "NotebookLifecycle1B89D1FC": "AWS::SageMaker::NotebookInstanceLifecycleConfig",
    },
}


def test_stateful_logical_ids_are_stable(nat: Synth) -> None:
    for kind, expected in STABLE.items():
        resources = nat.raw(kind)["Resources"]
        actual = {k: resources[k]["Type"] for k in expected if k in resources}
        assert actual == expected, (
            f"{kind}: a stateful resource changed its logical ID; renaming a construct replaces "
            f"the resource. Present: {sorted(k for k, v in resources.items() if v['Type'] in expected.values())}"
        )
