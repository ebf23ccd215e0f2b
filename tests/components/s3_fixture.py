"""S3 set-up for the decode tests, against moto in server mode on 127.0.0.1.

    s3_fixture.py upload ENDPOINT BUCKET PREFIX DIR   every file under DIR (hidden ones skipped)
                                                       as PREFIX/<path under DIR>
    s3_fixture.py denied-reader ENDPOINT BUCKET        (moto started with
                                                       INITIAL_NO_AUTH_ACTION_COUNT) a bucket and
                                                       an IAM user with no policy; prints its key
    s3_fixture.py deploy ENDPOINT TEMPLATE STATUS      creates the stack of TEMPLATE in moto's
                                                       default VPC; prints, as JSON, its outputs,
                                                       what moto created, and what the template
                                                       says of the two things moto does not apply
"""
import json
import os
import sys

import boto3
import botocore.exceptions


def client(endpoint, service, **keys):
    keys.setdefault("aws_access_key_id", "test")
    keys.setdefault("aws_secret_access_key", "test")
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", **keys)


def upload(endpoint, bucket, prefix, root):
    s3 = client(endpoint, "s3")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            key = "/".join(p for p in [prefix, os.path.relpath(path, root)] if p)
            s3.upload_file(path, bucket, key)


def denied_reader(endpoint, bucket):
    client(endpoint, "s3").create_bucket(Bucket=bucket)
    iam = client(endpoint, "iam")
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    reader = client(
        endpoint,
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    # moto lets the first INITIAL_NO_AUTH_ACTION_COUNT requests through unchecked: use them
    # up, so that the reader's requests are checked from here on.
    for _ in range(100):
        try:
            reader.list_objects_v2(Bucket=bucket)
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] == "AccessDenied":
                print(key["AccessKeyId"], key["SecretAccessKey"])
                return
            raise
    sys.exit("moto never started checking permissions")


def deploy(endpoint, template_path, status):
    from cfnlint.decode import decode

    ec2 = client(endpoint, "ec2")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnets = sorted(subnets["Subnets"], key=lambda s: s["AvailabilityZone"])[:2]
    certificate = client(endpoint, "acm").request_certificate(DomainName="logs.example.com")
    cloudformation = client(endpoint, "cloudformation")
    stack_name = "drifter"
    parameters = {
        "VpcId": subnets[0]["VpcId"],
        "SubnetIds": ",".join(s["SubnetId"] for s in subnets),
        "DomainName": "logs.example.com",
        "CertificateArn": certificate["CertificateArn"],
        "EnableHttpListener": "true",
        "IngressCidr": "10.0.0.0/8",
        "FixedResponseStatus": status,
        "LogPrefix": "drifter",
        "LogExpirationDays": "30",
    }
    with open(template_path, encoding="utf-8") as template:
        body = template.read()
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    cloudformation.get_waiter("stack_create_complete").wait(StackName=stack_name)
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }

    elb = client(endpoint, "elbv2")
    balancer = elb.describe_load_balancers()["LoadBalancers"][0]
    listeners = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    attributes = elb.describe_load_balancer_attributes(
        LoadBalancerArn=balancer["LoadBalancerArn"]
    )["Attributes"]
    group = ec2.describe_security_groups(GroupIds=balancer["SecurityGroups"])["SecurityGroups"][0]

    s3 = client(endpoint, "s3")
    bucket = resources["LogBucket"]
    s3.head_bucket(Bucket=bucket)

    def applied(call, key):
        """What moto applied, or None for what it does not apply from CloudFormation."""
        try:
            return call(Bucket=bucket)[key]
        except s3.exceptions.ClientError:
            return None

    encryption = applied(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration")
    public_access = applied(s3.get_public_access_block, "PublicAccessBlockConfiguration")
    lifecycle = applied(s3.get_bucket_lifecycle_configuration, "Rules")
    policy = applied(s3.get_bucket_policy, "Policy")

    template, matches = decode(template_path)
    assert not matches, matches
    properties = template["Resources"]
    print(json.dumps({
        "outputs": outputs,
        "bucket": bucket,
        "load_balancer": {
            "type": balancer["Type"],
            "scheme": balancer["Scheme"],
            "dns_name": balancer["DNSName"],
            "attributes_applied": {a["Key"]: a["Value"] for a in attributes},
        },
        "listeners": [
            {"port": l["Port"], "protocol": l["Protocol"], "actions": l["DefaultActions"]}
            for l in sorted(listeners, key=lambda l: l["Port"])
        ],
        "ingress": [
            {"port": r.get("FromPort"), "cidrs": [c["CidrIp"] for c in r.get("IpRanges", [])]}
            for r in group["IpPermissions"]
        ],
        "bucket_applied": {
            "encryption": encryption,
            "public_access": public_access,
            "lifecycle": lifecycle,
            "policy": policy,
        },
        "template_bucket": properties["LogBucket"]["Properties"],
        "template_attributes": {
            a["Key"]: a["Value"]
            for a in properties["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
        },
        "template_policy": properties["LogBucketPolicy"]["Properties"]["PolicyDocument"],
    }, default=str))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"upload": upload, "denied-reader": denied_reader, "deploy": deploy}[command](*arguments)
