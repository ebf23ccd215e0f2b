//! `examples/aws/drifter-elb.yaml`, the load balancer of README's "Setting up the load
//! balancer on AWS", deployed through CloudFormation on moto in server mode (127.0.0.1):
//! its outputs, the bucket, the load balancer, and listeners whose default action is a
//! fixed-response 204. moto serves no HTTP through the load balancer, so delivery is not
//! checked here; the stand-in's 204 round trip (`corpus_tree`) is, and its logs, uploaded to
//! the stack's bucket, decode from the stack's DecodeUrl.

use serde_json::{Value, json};

use crate::decode_s3::{corpus_lines, corpus_tree};
use crate::support::{self, Missing, Moto};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws/drifter-elb.yaml");

async fn the_stack_deploys_a_fixed_response_load_balancer_and_the_template_declares_its_logging()
-> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    let report = moto.fixture("deploy", &[TEMPLATE, "204"]);
    let stack: Value = serde_json::from_str(&report).expect("the fixture's JSON");
    let bucket = stack["bucket"].as_str().expect("the bucket's name");
    let dns_name = stack["load_balancer"]["dns_name"]
        .as_str()
        .expect("DNS name");

    let outputs = &stack["outputs"];
    assert_eq!(outputs["SendUrl"], "https://logs.example.com/");
    assert_eq!(outputs["HttpSendUrl"], format!("http://{dns_name}/"));
    let decode_url =
        format!("s3://{bucket}/drifter/AWSLogs/123456789012/elasticloadbalancing/us-east-1/");
    assert_eq!(outputs["DecodeUrl"], decode_url.as_str());
    assert_eq!(outputs["LogBucketName"], bucket);

    assert_eq!(stack["load_balancer"]["type"], "application");
    assert_eq!(stack["load_balancer"]["scheme"], "internet-facing");
    let fixed_204 = json!([{
        "Type": "fixed-response",
        "FixedResponseConfig": {"StatusCode": "204", "ContentType": "text/plain"}
    }]);
    assert_eq!(
        stack["listeners"],
        json!([
            {"port": 80, "protocol": "HTTP", "actions": fixed_204},
            {"port": 443, "protocol": "HTTPS", "actions": fixed_204},
        ])
    );
    assert_eq!(
        stack["ingress"],
        json!([{"port": 443, "cidrs": ["10.0.0.0/8"]}, {"port": 80, "cidrs": ["10.0.0.0/8"]}])
    );
    let applied = &stack["bucket_applied"];
    assert_eq!(
        applied["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256",
        "SSE-S3, the only encryption log delivery supports"
    );

    // moto 5.2.5 creates the resources above but does not apply the load balancer's
    // attributes (they read back empty) nor the bucket policy, public access block and
    // lifecycle rule: for those, only what the template declares is checked (hence the
    // test's name), not what AWS would do with it.
    let attributes = &stack["template_attributes"];
    assert_eq!(attributes["access_logs.s3.enabled"], "true");
    assert_eq!(
        attributes["access_logs.s3.bucket"],
        json!({"Ref": "LogBucket"})
    );
    assert_eq!(
        attributes["access_logs.s3.prefix"],
        json!({"Ref": "LogPrefix"})
    );
    let template_bucket = &stack["template_bucket"];
    assert_eq!(
        template_bucket["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true,
               "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    let expiry = &template_bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(
        expiry["ExpirationInDays"],
        json!({"Ref": "LogExpirationDays"})
    );
    assert_eq!(expiry["Status"], "Enabled");
    let statements = stack["template_policy"]["Statement"]
        .as_array()
        .expect("statements");
    let logs = json!({"Fn::Sub": "${LogBucket.Arn}/${LogPrefix}/AWSLogs/${AWS::AccountId}/*"});
    let service = &statements[0];
    assert_eq!(
        service["Principal"],
        json!({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})
    );
    assert_eq!(service["Action"], "s3:PutObject");
    assert_eq!(service["Resource"], logs);
    let regional = &statements[1]["Fn::If"];
    assert_eq!(regional[0], "ElbAccountRegion");
    assert_eq!(regional[1]["Action"], "s3:PutObject");
    assert_eq!(regional[1]["Resource"], logs);
    assert_eq!(
        regional[1]["Principal"]["AWS"]["Fn::Sub"][0],
        "arn:${AWS::Partition}:iam::${ElbAccountId}:root"
    );

    // What the stand-in wrote (answering 204, `send --accept 204`), where the load balancer
    // would write it, decodes from the stack's DecodeUrl.
    let tree = corpus_tree("alb").await;
    moto.upload(bucket, "drifter", tree.path());
    let env = moto.env();
    let run =
        support::run_with_env(&["decode", &decode_url], &env, b"", support::STAND_LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let mut decoded: Vec<&[u8]> = run.stdout.split(|&b| b == b'\n').collect();
    let expected_input = [&corpus_lines()[..], b"second file\n"].concat();
    let mut expected: Vec<&[u8]> = expected_input.split(|&b| b == b'\n').collect();
    decoded.sort();
    expected.sort();
    assert_eq!(decoded, expected);
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        the_stack_deploys_a_fixed_response_load_balancer_and_the_template_declares_its_logging,
    ]
}
