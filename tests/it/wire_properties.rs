//! Property tests of wire format v1 between the library's two ends: what `send` would put on
//! the wire (labelling, cutting, signing) is written into access-log lines exactly as the
//! stand-in writes them, then duplicated, shuffled and spread over several files of both
//! formats, and `decode` must give back every message exactly once.

use std::collections::BTreeMap;

use drifter_rsyslog::access_log::{self, Balancer, Format, Request};
use drifter_rsyslog::decode::{Counts, Decoder};
use drifter_rsyslog::send::outgoing::{IdMode, Labeler};
use drifter_rsyslog::wire::{self, Signer, TargetFormat};
use proptest::prelude::*;

const KEY: &[u8] = b"property test key, 32 bytes long";
const MAX_LINE: u64 = 1 << 20;

#[derive(Debug, Clone)]
struct Case {
    ids: Option<IdMode>,
    sequence: bool,
    signed: bool,
    budget: usize,
    messages: Vec<Vec<u8>>,
    /// Per request: how many extra copies reach the logs (re-sends), if it has an id.
    copies: Vec<u8>,
    /// Per request: which log file it lands in.
    files: Vec<u8>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let options = (
        prop_oneof![
            Just(None),
            Just(Some(IdMode::Content)),
            Just(Some(IdMode::Prefix))
        ],
        any::<bool>(),
        any::<bool>(),
        200usize..500,
    );
    options.prop_flat_map(|(ids, sequence, signed, budget)| {
        // Arbitrary bytes but LF (the reader splits on it), up to four times the budget.
        let message = proptest::collection::vec(
            any::<u8>().prop_filter("no LF", |&b| b != b'\n'),
            1..budget * 4,
        );
        (
            proptest::collection::vec(message, 1..10),
            proptest::collection::vec(0u8..3, 64),
            proptest::collection::vec(0u8..4, 64),
            any::<u64>(),
        )
            .prop_map(move |(messages, copies, files, seed)| Case {
                ids,
                sequence,
                signed,
                budget,
                messages,
                copies,
                files,
                seed,
            })
    })
}

fn balancer() -> Balancer {
    Balancer {
        name: "prop".into(),
        id: "0123456789abcdef".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        node_ip: "127.0.0.1".into(),
    }
}

fn entry(format: Format, target: &str, out: &mut Vec<u8>) {
    let request = Request {
        time: time::OffsetDateTime::UNIX_EPOCH,
        client: ([127, 0, 0, 1], 40000).into(),
        method: "GET".into(),
        url: format!("http://127.0.0.1:80{target}").into_bytes(),
        version: "HTTP/1.1".into(),
        user_agent: Some(b"drifter-rsyslog/test".to_vec()),
        status: 503,
        received_bytes: 0,
        sent_bytes: 0,
        tls: None,
        unreadable: false,
    };
    access_log::write_entry(format, &balancer(), &request, out);
}

fn decode_args() -> drifter_rsyslog::decode::Config {
    drifter_rsyslog::decode::Config {
        paths: Vec::new(),
        path: None,
        json: false,
        order: drifter_rsyslog::decode::Order::Sequence,
        reorder_window: None,
        reorder_bytes: 64 << 20,
        sort: false,
        verify_key: None,
        dedup_window: 1_000_000,
        max_pending_bytes: 64 << 20,
        since: None,
        until: None,
        now: None,
        follow: false,
        poll_interval: std::time::Duration::from_secs(60),
        gap_grace: None,
        edge_slack: std::time::Duration::from_secs(300),
        metrics_listen: None,
        jobs: 4,
        s3_endpoint: None,
    }
}

/// Sends the case's messages through the labeller and decodes the resulting logs; returns the
/// decoded lines and counts, and the messages expected back.
fn run(case: &Case) -> (Vec<Vec<u8>>, Counts, Vec<Vec<u8>>) {
    let signer = case.signed.then(|| Signer::new(KEY));
    let format = TargetFormat::new("/p", case.budget, signer.clone());
    let labeler = Labeler::new(format, case.ids, case.sequence, MAX_LINE, None)
        .expect("the budget is enough");
    let mut expected = Vec::new();
    let mut requests = Vec::new();
    for (i, message) in case.messages.iter().enumerate() {
        // `prefix` lines carry their own id; without ids, a re-sent line is a new message.
        let line = match case.ids {
            Some(IdMode::Prefix) => [format!("ID-{i} ").as_bytes(), message].concat(),
            _ => message.clone(),
        };
        let outgoing = labeler.prepare(i as u64 + 1, line).expect("a message");
        assert_eq!(outgoing.text(), &message[..]);
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets.len() as u64, outgoing.fragment_count());
        // A reader of the original format finds (the first piece of) the message first.
        let query = targets[0].split_once('?').map_or("", |(_, q)| q);
        assert!(message.starts_with(&wire::decode_query(query.as_bytes())));
        for target in targets {
            assert!(
                target.len() <= case.budget,
                "{} > {}",
                target.len(),
                case.budget
            );
            requests.push((target, outgoing.id.is_some()));
        }
        // `content` ids merge byte-identical lines by design.
        if case.ids != Some(IdMode::Content) || !expected.contains(message) {
            expected.push(message.clone());
        }
    }
    let mut logged: Vec<(u8, String)> = Vec::new();
    for (n, (target, has_id)) in requests.into_iter().enumerate() {
        let copies = if has_id { 1 + case.copies[n % 64] } else { 1 };
        for copy in 0..copies {
            logged.push((case.files[(n + copy as usize) % 64], target.clone()));
        }
    }
    fastrand::Rng::with_seed(case.seed).shuffle(&mut logged);
    let mut files: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for (file, target) in &logged {
        let format = if file % 2 == 0 {
            Format::Classic
        } else {
            Format::Alb
        };
        entry(format, target, files.entry(*file).or_default());
    }
    let mut out = Vec::new();
    let mut decoder = Decoder::new(&decode_args(), Default::default(), signer, &mut out);
    for (file, lines) in &files {
        decoder
            .decode_stream(&format!("file-{file}"), &lines[..])
            .expect("decodes");
    }
    decoder.finish().expect("flushes");
    let counts = decoder.counts.clone();
    drop(decoder);
    let decoded = out
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (decoded, counts, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_message_comes_back_exactly_once(case in case()) {
        let (mut decoded, counts, mut expected) = run(&case);
        // Numbered, the messages come back in the order sent, however the files shuffled
        // them (content ids keep whichever copy of identical lines came first).
        if case.sequence && case.ids != Some(IdMode::Content) {
            prop_assert_eq!(&decoded, &expected, "in the order sent");
        }
        decoded.sort();
        expected.sort();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(counts.incomplete, 0);
        prop_assert_eq!(counts.missing, 0);
        prop_assert_eq!(counts.forged, 0);
        prop_assert_eq!(counts.malformed, 0);
    }
}
