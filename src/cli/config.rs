//! Each command's typed configuration, built from its clap struct here at the edge: the
//! commands know nothing of clap or of these structs.

use super::{DecodeArgs, MockElbArgs, SendArgs};

impl From<&SendArgs> for crate::send::Config {
    fn from(args: &SendArgs) -> Self {
        crate::send::Config {
            url: args.url.clone(),
            concurrency: args.concurrency,
            accept: args.accept.clone(),
            max_line_bytes: args.max_line_bytes,
            max_url_bytes: args.max_url_bytes,
            queue_messages: args.queue_messages,
            queue_bytes: args.queue_bytes,
            spool: args.spool.clone(),
            file: args.file.clone(),
            file_start: args.file_start,
            file_poll_interval: args.file_poll_interval,
            spool_sync: args.spool_sync,
            spool_sync_interval: args.spool_sync_interval,
            spool_max_bytes: args.spool_max_bytes,
            connect_timeout: args.connect_timeout,
            request_timeout: args.request_timeout,
            retry_initial: args.retry_initial,
            retry_max: args.retry_max,
            max_attempts: args.max_attempts,
            drain_timeout: args.drain_timeout,
            dead_letter: args.dead_letter.clone(),
            proxy: args.proxy.clone(),
            trust: args.trust,
            ca_cert: args.ca_cert.clone(),
            insecure: args.insecure,
            http: args.http,
            confirm: args.confirm,
            transactions: args.transactions,
            begin_mark: args.begin_mark.clone(),
            commit_mark: args.commit_mark.clone(),
            keepalive_interval: args.keepalive_interval,
            message_timeout: args.message_timeout,
            commit_timeout: args.commit_timeout,
            probe: args.probe,
            metrics_listen: args.metrics_listen,
            stats_interval: args.stats_interval,
            ids: args.ids,
            sequence: args.sequence,
            sign_key: args.sign_key.clone(),
            dry_run: args.dry_run,
        }
    }
}

impl From<&DecodeArgs> for crate::decode::Config {
    fn from(args: &DecodeArgs) -> Self {
        crate::decode::Config {
            paths: args.paths.clone(),
            path: args.path.clone(),
            json: args.json,
            order: args.order,
            reorder_window: args.reorder_window,
            reorder_bytes: args.reorder_bytes,
            sort: args.sort,
            verify_key: args.verify_key.clone(),
            dedup_window: args.dedup_window,
            max_pending_bytes: args.max_pending_bytes,
            since: args.since,
            until: args.until,
            now: args.now,
            follow: args.follow,
            poll_interval: args.poll_interval,
            gap_grace: args.gap_grace,
            edge_slack: args.edge_slack,
            metrics_listen: args.metrics_listen,
            jobs: args.jobs,
            s3_endpoint: args.s3_endpoint.clone(),
        }
    }
}

impl From<&MockElbArgs> for crate::mock_elb::Config {
    fn from(args: &MockElbArgs) -> Self {
        crate::mock_elb::Config {
            listen: args.listen,
            log_dir: args.log_dir.clone(),
            format: args.format,
            status: args.status,
            rotate_secs: args.rotate_secs,
            max_request_line: args.max_request_line,
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            name: args.name.clone(),
            account: args.account.clone(),
            region: args.region.clone(),
            metrics_listen: args.metrics_listen,
        }
    }
}
