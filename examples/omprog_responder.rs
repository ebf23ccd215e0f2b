//! The omprog feedback protocol with nothing behind it: answers every line at once and sends
//! nothing anywhere. `bench_rsyslog` runs it under rsyslogd as the protocol's own ceiling on
//! this machine, the rate no confirming program can beat.
//!
//!     omprog_responder confirm|transactions COUNT DONE_FILE
//!
//! confirm: `OK` when ready, then `OK` per line. transactions: `OK` when ready and to each
//! `BEGIN TRANSACTION`, `DEFER_COMMIT` per message, `OK` to each `COMMIT TRANSACTION`. Once
//! COUNT messages have been answered (and, in transactions, committed), it creates DONE_FILE.

use std::io::{BufRead, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, count, done_file] = args.as_slice() else {
        eprintln!("usage: omprog_responder confirm|transactions COUNT DONE_FILE");
        std::process::exit(2);
    };
    let transactions = mode == "transactions";
    let count: u64 = count.parse().map_err(std::io::Error::other)?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    out.write_all(b"OK\n")?;
    out.flush()?;
    let (mut answered, mut committed) = (0u64, 0u64);
    for line in stdin.lock().split(b'\n') {
        let line = line?;
        let reply: &[u8] = if !transactions {
            answered += 1;
            committed = answered;
            b"OK\n"
        } else if line == b"BEGIN TRANSACTION" {
            b"OK\n"
        } else if line == b"COMMIT TRANSACTION" {
            committed = answered;
            b"OK\n"
        } else {
            answered += 1;
            b"DEFER_COMMIT\n"
        };
        out.write_all(reply)?;
        out.flush()?;
        if committed == count {
            std::fs::write(done_file, b"done\n")?;
        }
    }
    Ok(())
}
