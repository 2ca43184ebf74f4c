"""One AWS client case through vpcgate, for integration-tests/services.rs.

    python aws_case.py CASE [ARGS...]

Prints one JSON line: {"ok": true, ...} or {"ok": false, "error": "<what botocore printed>"}.
The proxy, CA bundle, credentials and endpoints settings come from the environment, as a user's
would.
"""
import json
import sys

import boto3
import botocore.config
import botocore.exceptions


def web_identity(bucket, keys_file):
    # AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE: the credential chain calls
    # sts:AssumeRoleWithWebIdentity (EKS IRSA) before the first S3 call.
    session = boto3.Session()
    creds = session.get_credentials().get_frozen_credentials()
    # The S3 stand-in verifies SigV4 with the key STS issued.
    with open(keys_file, "a") as f:
        f.write(f"{creds.access_key} {creds.secret_key}\n")
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"private route")
    body = s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read().decode()
    return {"access_key": creds.access_key, "token": creds.token, "body": body}


def dynamodb(table):
    d = boto3.client("dynamodb")
    d.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    d.put_item(TableName=table, Item={"k": {"S": "route"}, "v": {"S": "gateway"}})
    item = d.get_item(TableName=table, Key={"k": {"S": "route"}})["Item"]
    return {"item": item["v"]["S"]}


def caller_identity(signature_version):
    cfg = botocore.config.Config(signature_version=signature_version) if signature_version != "default" else None
    sts = boto3.client("sts", config=cfg)
    return {"arn": sts.get_caller_identity()["Arn"]}


def dynamodb_get(region):
    d = boto3.client("dynamodb", region_name=region)
    d.get_item(TableName="t", Key={"k": {"S": "x"}})
    return {}


CASES = {
    "web-identity": web_identity,
    "dynamodb": dynamodb,
    "caller-identity": caller_identity,
    "dynamodb-get": dynamodb_get,
}

if __name__ == "__main__":
    try:
        out = CASES[sys.argv[1]](*sys.argv[2:])
        print(json.dumps({"ok": True, **out}))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
