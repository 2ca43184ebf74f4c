"""Builds a VPC with S3/STS endpoints, prefix lists and buckets in moto (server mode), for the
`vpcgate audit` tests.

    python moto_vpc.py ENDPOINT_URL SCENARIO      # SCENARIO: good | no-route | main-table

ENDPOINT_URL is moto's base URL (http://127.0.0.1:PORT). Prints ONE JSON object on stdout with
every ID created and what moto reported back. Deterministic apart from the IDs moto assigns.

Scenarios:
  good        custom route table explicitly associated with the subnet, with the S3 prefix-list
              route to the gateway endpoint.
  no-route    the same, then the prefix-list route deleted from the subnet's table.
  main-table  the subnet not explicitly associated (uses the VPC's main table); the gateway
              endpoint and its prefix-list route are on the main table.
"""
import json
import os
import sys

os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

REGION = "us-east-1"
S3_SERVICE = "com.amazonaws.us-east-1.s3"
STS_SERVICE = "com.amazonaws.us-east-1.sts"
SCENARIOS = ("good", "no-route", "main-table")


def pl_route(table, pl_id):
    for r in table.get("Routes", []):
        if r.get("DestinationPrefixListId") == pl_id:
            return r
    return None


def route_report(route, vpce_id):
    if route is None:
        return {"exists": False}
    return {
        "exists": True,
        "state": route.get("State"),
        "origin": route.get("Origin"),
        "vpce_field": next((k for k, v in route.items() if v == vpce_id), None),
        "route": route,
    }


def build(endpoint, scenario):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION, config=cfg)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=cfg)
    out = {"scenario": scenario, "region": REGION}

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")[
        "Subnet"
    ]["SubnetId"]
    main_rt_id = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"][0]["RouteTableId"]
    out.update(vpc_id=vpc_id, subnet_id=subnet_id, main_route_table_id=main_rt_id)

    if scenario == "main-table":
        rt_id = main_rt_id
        out["custom_route_table_id"] = None
        out["association_id"] = None
    else:
        rt_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        assoc = ec2.associate_route_table(RouteTableId=rt_id, SubnetId=subnet_id)["AssociationId"]
        out["custom_route_table_id"] = rt_id
        out["association_id"] = assoc
    out["subnet_route_table_id"] = rt_id

    # The AWS-managed S3 prefix list.
    pls = ec2.describe_managed_prefix_lists(
        Filters=[{"Name": "prefix-list-name", "Values": [S3_SERVICE]}]
    )["PrefixLists"]
    if pls:
        pl_id = pls[0]["PrefixListId"]
        entries = ec2.get_managed_prefix_list_entries(PrefixListId=pl_id)["Entries"]
        out["s3_prefix_list"] = {"found": True, "id": pl_id, "prefix_list": pls[0], "entries": entries}
    else:
        pl_id = None
        out["s3_prefix_list"] = {"found": False, "note": "moto has no managed prefix list " + S3_SERVICE}

    # S3 gateway endpoint on the subnet's route table.
    gw = ec2.create_vpc_endpoint(
        VpcId=vpc_id, ServiceName=S3_SERVICE, VpcEndpointType="Gateway", RouteTableIds=[rt_id]
    )["VpcEndpoint"]
    gw_id = gw["VpcEndpointId"]
    out["gateway_endpoint"] = {"id": gw_id, "create_response": gw}

    table = ec2.describe_route_tables(RouteTableIds=[rt_id])["RouteTables"][0]
    auto = pl_route(table, pl_id) if pl_id else None
    out["gateway_endpoint"]["route_added_by_moto"] = auto is not None
    out["gateway_endpoint"]["route_created_explicitly"] = None
    if pl_id and auto is None:
        # moto 5.2.1 adds the route itself. If it did not: moto (like AWS) rejects VpcEndpointId
        # for a gateway endpoint (RouteNotSupported); GatewayId=vpce-... is accepted.
        try:
            ec2.create_route(RouteTableId=rt_id, DestinationPrefixListId=pl_id, VpcEndpointId=gw_id)
            out["gateway_endpoint"]["route_created_explicitly"] = "VpcEndpointId"
        except botocore.exceptions.ClientError:
            ec2.create_route(RouteTableId=rt_id, DestinationPrefixListId=pl_id, GatewayId=gw_id)
            out["gateway_endpoint"]["route_created_explicitly"] = "GatewayId"
    if pl_id:
        route = pl_route(ec2.describe_route_tables(RouteTableIds=[rt_id])["RouteTables"][0], pl_id)
        out["gateway_endpoint"]["route_after_create"] = route_report(route, gw_id)

    if scenario == "no-route" and pl_id:
        ec2.delete_route(RouteTableId=rt_id, DestinationPrefixListId=pl_id)
        route = pl_route(ec2.describe_route_tables(RouteTableIds=[rt_id])["RouteTables"][0], pl_id)
        out["gateway_endpoint"]["route_after_delete"] = route_report(route, gw_id)

    # What the audit sees for the subnet: its explicit association (none in main-table).
    explicit = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["RouteTables"]
    out["subnet_explicit_route_table_ids"] = [t["RouteTableId"] for t in explicit]
    out["subnet_route_table_routes"] = ec2.describe_route_tables(RouteTableIds=[rt_id])["RouteTables"][0]["Routes"]

    # Interface endpoint for STS with its own security group.
    sg_id = ec2.create_security_group(
        GroupName="sts-endpoint", Description="sts endpoint", VpcId=vpc_id
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}
        ],
    )
    itf = ec2.create_vpc_endpoint(
        VpcId=vpc_id,
        ServiceName=STS_SERVICE,
        VpcEndpointType="Interface",
        SubnetIds=[subnet_id],
        SecurityGroupIds=[sg_id],
        PrivateDnsEnabled=True,
    )["VpcEndpoint"]
    itf_id = itf["VpcEndpointId"]
    eni_ids = itf.get("NetworkInterfaceIds", [])
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"] if eni_ids else []
    out["interface_endpoint"] = {
        "id": itf_id,
        "security_group_id": sg_id,
        "network_interface_ids": eni_ids,
        "private_ips": {e["NetworkInterfaceId"]: e.get("PrivateIpAddress") for e in enis},
        "dns_entries": itf.get("DnsEntries"),
        "groups": itf.get("Groups"),
        "create_response": itf,
    }

    endpoints = ec2.describe_vpc_endpoints(VpcEndpointIds=[gw_id, itf_id])["VpcEndpoints"]
    out["describe_vpc_endpoints"] = endpoints

    # Customer-managed prefix list, then modified.
    cpl = ec2.create_managed_prefix_list(
        PrefixListName="audit-allowed",
        AddressFamily="IPv4",
        MaxEntries=10,
        Entries=[{"Cidr": "192.0.2.0/24", "Description": "a"}, {"Cidr": "198.51.100.0/24", "Description": "b"}],
    )["PrefixList"]
    cpl_id = cpl["PrefixListId"]
    v0 = ec2.describe_managed_prefix_lists(PrefixListIds=[cpl_id])["PrefixLists"][0].get("Version")
    e0 = ec2.get_managed_prefix_list_entries(PrefixListId=cpl_id)["Entries"]
    mod = ec2.modify_managed_prefix_list(
        PrefixListId=cpl_id,
        CurrentVersion=v0,
        AddEntries=[{"Cidr": "203.0.113.0/24", "Description": "c"}],
        RemoveEntries=[{"Cidr": "198.51.100.0/24"}],
    )["PrefixList"]
    v1 = ec2.describe_managed_prefix_lists(PrefixListIds=[cpl_id])["PrefixLists"][0].get("Version")
    e1 = ec2.get_managed_prefix_list_entries(PrefixListId=cpl_id)["Entries"]
    out["customer_prefix_list"] = {
        "id": cpl_id,
        "version_before": v0,
        "entries_before": e0,
        "modify_response_version": mod.get("Version"),
        "version_after": v1,
        "entries_after": e1,
    }

    # Buckets.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyFromVpce",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::audit-bucket", "arn:aws:s3:::audit-bucket/*"],
                "Condition": {"StringNotEquals": {"aws:SourceVpce": gw_id}},
            }
        ],
    }
    s3.create_bucket(Bucket="audit-bucket")
    s3.put_bucket_policy(Bucket="audit-bucket", Policy=json.dumps(policy))
    s3.create_bucket(Bucket="open-bucket")
    got = s3.get_bucket_policy(Bucket="audit-bucket")["Policy"]
    try:
        s3.get_bucket_policy(Bucket="open-bucket")
        none = {"error": None}
    except botocore.exceptions.ClientError as e:
        none = {"error": e.response["Error"].get("Code"), "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
    out["buckets"] = {
        "audit-bucket": {"policy": json.loads(got), "policy_roundtrips": json.loads(got) == policy},
        "open-bucket": none,
    }
    return out


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        sys.exit("usage: moto_vpc.py ENDPOINT_URL " + "|".join(SCENARIOS))
    print(json.dumps(build(sys.argv[1], sys.argv[2]), default=str, sort_keys=True))


if __name__ == "__main__":
    main()
