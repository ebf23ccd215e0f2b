"""S3 set-up for the decode tests, against moto in server mode on 127.0.0.1.

    s3_fixture.py upload ENDPOINT BUCKET PREFIX DIR   every file under DIR (hidden ones skipped)
                                                       as PREFIX/<path under DIR>
    s3_fixture.py denied-reader ENDPOINT BUCKET        (moto started with
                                                       INITIAL_NO_AUTH_ACTION_COUNT) a bucket and
                                                       an IAM user with no policy; prints its key
"""
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


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"upload": upload, "denied-reader": denied_reader}[command](*arguments)
